// A small panel fed by the server's own Prometheus /metrics: a few totals, refreshed while open.

import { h } from "./dom";

const REFRESH_MS = 5000;
const MAX_ROWS = 12;
// Families every Prometheus client exports: not about this service.
const GENERIC = /^(python_|process_|go_)/;

interface Family {
  help: string;
  value: number;
}

/** Sum every sample of each metric family (counters across labels, gauges across instances). */
export function summarise(text: string): Map<string, Family> {
  const help = new Map<string, string>();
  const families = new Map<string, Family>();
  for (const line of text.split("\n")) {
    if (line.startsWith("# HELP ")) {
      const [name, ...rest] = line.slice(7).split(" ");
      help.set(name, rest.join(" "));
      continue;
    }
    if (!line || line.startsWith("#")) continue;
    const match = /^([a-zA-Z_:][\w:]*)(\{[^}]*\})?\s+(\S+)/.exec(line);
    if (!match || GENERIC.test(match[1]) || /_(bucket|created)$/.test(match[1])) continue;
    const value = Number(match[3]);
    if (!Number.isFinite(value)) continue;
    const name = match[1];
    const family = families.get(name) ?? { help: "", value: 0 };
    family.value += value;
    families.set(name, family);
  }
  for (const [name, family] of families) {
    family.help = help.get(name) ?? help.get(name.replace(/_(total|sum|count)$/, "")) ?? "";
  }
  return families;
}

function formatValue(value: number): string {
  return Number.isInteger(value) ? value.toLocaleString() : value.toFixed(3);
}

export function startMetricsPanel(panel: HTMLDetailsElement, body: HTMLElement): void {
  let timer: number | undefined;
  async function refresh(): Promise<void> {
    try {
      const answer = await fetch("metrics", { cache: "no-store" });
      if (!answer.ok) throw new Error(String(answer.status));
      const families = [...summarise(await answer.text())].slice(0, MAX_ROWS);
      body.replaceChildren(
        families.length
          ? h(
              "table",
              {},
              h("caption", {}, "Totals since the server started"),
              ...families.map(([name, f]) =>
                h("tr", {}, h("th", { scope: "row", title: f.help }, name), h("td", {}, formatValue(f.value))),
              ),
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
