// The API reference: Swagger UI over this server's own description (/openapi.json).
window.addEventListener("load", function () {
  window.ui = SwaggerUIBundle({
    url: "openapi.json",
    dom_id: "#swagger-ui",
    deepLinking: true,
    docExpansion: "list",
    defaultModelsExpandDepth: 0,
    displayOperationId: true,
    filter: true,
    // No request to swagger.io: the page talks only to this server.
    validatorUrl: null,
  });
});
