// The generated TaskService client over gRPC-Web, talking to the server that served this page.

import { createClient, type Client, type Interceptor } from "@connectrpc/connect";
import { createGrpcWebTransport } from "@connectrpc/connect-web";
import { TaskService } from "./gen/taskservice/task_service_pb";
import { token } from "./session";

const bearer: Interceptor = (next) => async (request) => {
  const jwt = token();
  if (jwt) request.header.set("authorization", `Bearer ${jwt}`);
  return next(request);
};

export type TaskClient = Client<typeof TaskService>;

export function taskClient(baseUrl = window.location.origin): TaskClient {
  return createClient(TaskService, apiTransport(baseUrl));
}

/** gRPC-Web to this page's server, carrying the session's token (any service of the API). */
export function apiTransport(baseUrl = window.location.origin) {
  return createGrpcWebTransport({ baseUrl, interceptors: [bearer] });
}

/** A request id that makes a retried create safe (randomUUID needs a secure context). */
export function requestId(): string {
  if (typeof crypto.randomUUID === "function") return crypto.randomUUID();
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}
