// The grpc-web client library (the one existing React clients of this API use), for the browser
// tests: it proves the server speaks its default text mode and its binary mode, unary and streaming.
// Messages are (de)serialised with the same generated @bufbuild/protobuf code as the board.

import { create, fromBinary, toBinary, type DescMessage, type MessageShape } from "@bufbuild/protobuf";
import { GrpcWebClientBase, MethodDescriptor, type RpcError } from "grpc-web";
import {
  CreateTaskRequestSchema,
  GetTaskRequestSchema,
  TaskEventSchema,
  TaskSchema,
  WatchTasksRequestSchema,
} from "../src/gen/taskservice/task_service_pb";

type Format = "text" | "binary";
const SERVICE = `${window.location.origin}/taskservice.TaskService`;

function descriptor<I extends DescMessage, O extends DescMessage>(
  name: string,
  kind: "unary" | "server_streaming",
  input: I,
  output: O,
): MethodDescriptor<MessageShape<I>, MessageShape<O>> {
  const placeholder = Object as unknown as new () => never;
  return new MethodDescriptor(
    `/taskservice.TaskService/${name}`,
    kind,
    placeholder,
    placeholder,
    (request: MessageShape<I>) => toBinary(input, request),
    (bytes: Uint8Array) => fromBinary(output, bytes),
  );
}

const createTask = descriptor("CreateTask", "unary", CreateTaskRequestSchema, TaskSchema);
const getTask = descriptor("GetTask", "unary", GetTaskRequestSchema, TaskSchema);
const watchTasks = descriptor("WatchTasks", "server_streaming", WatchTasksRequestSchema, TaskEventSchema);

function client(format: Format): GrpcWebClientBase {
  return new GrpcWebClientBase({ format });
}

function metadata(token: string): Record<string, string> {
  return token ? { authorization: `Bearer ${token}` } : {};
}

async function create_(format: Format, title: string, label: string, token: string): Promise<string> {
  const request = create(CreateTaskRequestSchema, { title, labels: [label] });
  const task = await client(format).unaryCall(`${SERVICE}/CreateTask`, request, metadata(token), createTask);
  return task.id;
}

/** GetTask on a missing id: resolves to the error code and message the library parsed. */
function missing(format: Format, token: string): Promise<{ code: number; message: string }> {
  const request = create(GetTaskRequestSchema, { id: "0190f1c2-0000-7000-8000-000000000000" });
  return new Promise((resolve) => {
    client(format).rpcCall(`${SERVICE}/GetTask`, request, metadata(token), getTask, (err: RpcError) =>
      resolve({ code: err?.code ?? 0, message: err?.message ?? "" }),
    );
  });
}

/** Watch a label with include_initial and collect `count` event titles. */
function watch(format: Format, label: string, count: number, token: string): Promise<string[]> {
  const request = create(WatchTasksRequestSchema, { labels: [label], includeInitial: true });
  const stream = client(format).serverStreaming(`${SERVICE}/WatchTasks`, request, metadata(token), watchTasks);
  const titles: string[] = [];
  return new Promise((resolve, reject) => {
    setTimeout(() => {
      stream.cancel();
      reject(new Error(`only ${titles.length} of ${count} events arrived`));
    }, 10_000);
    stream.on("data", (event) => {
      titles.push(event.task?.title ?? "");
      if (titles.length === count) {
        stream.cancel();
        resolve(titles);
      }
    });
    stream.on("error", (err) => reject(new Error(`${err.code}: ${err.message}`)));
  });
}

Object.assign(window, { grpcWeb: { create: create_, missing, watch } });
document.body.dataset.ready = "true";
