// ESM entry of wechat-datacube (the implementation is index.js).
import cjs from "./index.js";

export const { startDatacube, binaryPath } = cjs;
export default cjs;
