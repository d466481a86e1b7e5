// The generated TaskService client over the Connect protocol (@connectrpc/connect-web's Connect
// transport, JSON or binary), for the browser tests: the server's Connect side as connect-web speaks it.

import { ConnectError, createClient, type Interceptor } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-web";
import { TaskService } from "../src/gen/taskservice/task_service_pb";

function client(binary: boolean, token: string) {
  const bearer: Interceptor = (next) => async (request) => {
    if (token) request.header.set("authorization", `Bearer ${token}`);
    return next(request);
  };
  const transport = createConnectTransport({
    baseUrl: window.location.origin,
    useBinaryFormat: binary,
    interceptors: [bearer],
  });
  return createClient(TaskService, transport);
}

async function create(binary: boolean, title: string, label: string, token: string): Promise<string> {
  const task = await client(binary, token).createTask({ title, labels: [label] });
  return task.id;
}

async function missing(binary: boolean, token: string): Promise<{ code: number; message: string }> {
  try {
    await client(binary, token).getTask({ id: "no-such-task" });
    return { code: 0, message: "" };
  } catch (error) {
    const failure = ConnectError.from(error);
    return { code: failure.code, message: failure.rawMessage };
  }
}

async function watch(binary: boolean, label: string, count: number, token: string): Promise<string[]> {
  const titles: string[] = [];
  const abort = new AbortController();
  const events = client(binary, token).watchTasks({ labels: [label], includeInitial: true }, { signal: abort.signal });
  try {
    for await (const event of events) {
      titles.push(event.task?.title ?? "");
      if (titles.length >= count) break;
    }
  } finally {
    abort.abort();
  }
  return titles;
}

declare global {
  interface Window {
    connectWeb: { create: typeof create; missing: typeof missing; watch: typeof watch };
  }
}

window.connectWeb = { create, missing, watch };
