# Sourced by the serving benchmarks (serve.sh, serve_cpu.sh): their anchor, nginx answering
# every request with one file's bytes as a constant (`return 200 '…'`: no file read, no lookup).
#
#   start_nginx_constant DIR PORT FILE   # writes DIR/nginx.conf; the master's pid in DIR/nginx.pid
start_nginx_constant() {
  local dir=$1 port=$2 file=$3
  # Compact JSON without single quotes or backslashes goes into the string verbatim.
  if grep -q "['\\\\]" "$file"; then echo "the answer cannot be an nginx string"; return 1; fi
  cat >"$dir/nginx.conf" <<NGINX
worker_processes auto;
pid $dir/nginx.pid;
error_log $dir/nginx.err warn;
events { worker_connections 4096; }
http {
  access_log off;
  keepalive_requests 1000000;
  server {
    listen 127.0.0.1:$port;
    location / {
      default_type "application/json; encoding=utf-8";
      return 200 '$(cat "$file")';
    }
  }
}
NGINX
  nginx -c "$dir/nginx.conf" -e "$dir/nginx.err"
}
