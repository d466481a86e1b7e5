// A read-only panel listing the signed-in user's webhooks (an admin's: everyone's), loaded when
// opened. Webhooks are managed with `taskctl webhook` or the WebhookService API.

import { ConnectError, createClient } from "@connectrpc/connect";
import { apiTransport } from "./api";
import { h } from "./dom";
import { WebhookService, type Webhook } from "./gen/taskservice/task_service_pb";

function row(hook: Webhook): HTMLTableRowElement {
  return h(
    "tr",
    { "data-testid": "webhook-row" },
    h("td", {}, hook.url),
    h("td", {}, hook.active ? "active" : "disabled"),
    h("td", {}, String(hook.deliveredSequence)),
    h("td", { class: "error" }, hook.lastError),
  );
}

async function load(body: HTMLElement): Promise<void> {
  const client = createClient(WebhookService, apiTransport());
  try {
    const { webhooks } = await client.listWebhooks({ pageSize: 100 });
    if (!webhooks.length) {
      body.replaceChildren(h("p", {}, "No webhooks. Create one with `taskctl webhook create URL`."));
      return;
    }
    const head = h("tr", {}, h("th", {}, "URL"), h("th", {}, "State"), h("th", {}, "Delivered"), h("th", {}, "Last error"));
    body.replaceChildren(h("table", {}, h("thead", {}, head), h("tbody", {}, ...webhooks.map(row))));
  } catch (error) {
    body.replaceChildren(h("p", {}, ConnectError.from(error).rawMessage || "Could not load webhooks."));
  }
}

export function startWebhooksPanel(panel: HTMLDetailsElement, body: HTMLElement): void {
  panel.addEventListener("toggle", () => {
    if (panel.open) void load(body);
  });
}
