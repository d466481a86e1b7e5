// A small panel fed by the server's own Prometheus /metrics, refreshed while open.
//
// It shows a few figures a board user cares about when the server exports TaskService's metric
// families, and otherwise the totals of whatever families it finds, so it works with any exporter.

import { h } from "./dom";

const REFRESH_MS = 5000;
const MAX_ROWS = 12;
// Families every Prometheus client exports: not about this service.
const GENERIC = /^(python_|process_|go_)/;

export interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

export function parse(text: string): Sample[] {
  const samples: Sample[] = [];
  for (const line of text.split("\n")) {
    if (!line || line.startsWith("#")) continue;
    const match = /^([a-zA-Z_:][\w:]*)(?:\{([^}]*)\})?\s+(\S+)/.exec(line);
    if (!match) continue;
    const value = Number(match[3]);
    if (!Number.isFinite(value)) continue;
    const labels: Record<string, string> = {};
    for (const pair of (match[2] ?? "").matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)) labels[pair[1]] = pair[2];
    samples.push({ name: match[1], labels, value });
  }
  return samples;
}

function total(samples: Sample[], name: string, keep: (s: Sample) => boolean = () => true): number | null {
  const matching = samples.filter((s) => s.name === name && keep(s));
  return matching.length ? matching.reduce((sum, s) => sum + s.value, 0) : null;
}

/** Rows of (label, value) for the panel. */
export function summarise(samples: Sample[]): Array<[string, string]> {
  const rows: Array<[string, number | null, (v: number) => string]> = [];
  const count = (v: number) => v.toLocaleString();
  const sum = total(samples, "grpc_server_handling_seconds_sum");
  const calls = total(samples, "grpc_server_handling_seconds_count");
  const handled = total(samples, "grpc_server_handled_total");
  const failed = (s: Sample) => s.labels.grpc_code !== "OK";
  rows.push(
    ["Tasks", total(samples, "taskservice_tasks"), count],
    ["Open watches", total(samples, "taskservice_watchers"), count],
    ["Calls handled", handled, count],
    ["Failed calls", handled === null ? null : (total(samples, "grpc_server_handled_total", failed) ?? 0), count],
    ["Mean call time", sum !== null && calls ? sum / calls : null, (v) => `${(v * 1000).toFixed(1)} ms`],
    ["Events appended", total(samples, "taskservice_events_appended_total"), count],
    ["Rate-limited calls", total(samples, "taskservice_rate_limited_total"), count],
  );
  const known = rows.filter(([, value]) => value !== null).map(([label, value, show]) => [label, show(value!)]);
  if (known.length) return known as Array<[string, string]>;
  const families = new Map<string, number>();
  for (const s of samples) {
    if (GENERIC.test(s.name) || /_(bucket|created)$/.test(s.name)) continue;
    families.set(s.name, (families.get(s.name) ?? 0) + s.value);
  }
  return [...families].slice(0, MAX_ROWS).map(([name, value]) => [name, count(value)]);
}

export function startMetricsPanel(panel: HTMLDetailsElement, body: HTMLElement): void {
  let timer: number | undefined;
  async function refresh(): Promise<void> {
    try {
      const answer = await fetch("metrics", { cache: "no-store" });
      if (!answer.ok) throw new Error(String(answer.status));
      const rows = summarise(parse(await answer.text()));
      body.replaceChildren(
        rows.length
          ? h(
              "table",
              {},
              h("caption", {}, "Since the server started"),
              ...rows.map(([label, value]) => h("tr", {}, h("th", { scope: "row" }, label), h("td", {}, value))),
            )
          : h("p", {}, "The server reports no metrics yet."),
      );
    } catch {
      body.replaceChildren(h("p", {}, "Metrics are not available from this server."));
    }
  }
  panel.addEventListener("toggle", () => {
    window.clearInterval(timer);
    if (panel.open) {
      void refresh();
      timer = window.setInterval(refresh, REFRESH_MS);
    }
  });
}
