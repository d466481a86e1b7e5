import { defineConfig } from "vite";

// A test page for the browser tests (grpc-web library client); never served by the server.
export default defineConfig({
  root: "compat",
  base: "./",
  build: { outDir: "../dist-compat", emptyOutDir: true, target: "es2022" },
});
