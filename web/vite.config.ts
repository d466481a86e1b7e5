import { defineConfig } from "vite";

// The server serves dist/ at /; `npm run dev` proxies API calls to a local server on :8080.
export default defineConfig({
  base: "./",
  build: { outDir: "dist", emptyOutDir: true, target: "es2022" },
  server: {
    proxy: {
      "/taskservice.TaskService": "http://127.0.0.1:8080",
      "/metrics": "http://127.0.0.1:8080",
    },
  },
});
