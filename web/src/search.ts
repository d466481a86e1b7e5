// The search box: words go to full-text search (`query`: `login rele*`, `"login page"`), anything
// that reads as the filter language (`status = TODO`, `labels:"bug"`, `due_date < now+7d`, AND / OR /
// NOT) to `filter`. The server judges both; the board only decides which field the text goes in.

/** A comparison or a has-operator, or an upper-case AIP-160 keyword, outside quoted strings. */
const FILTER_SYNTAX = /[=<>:]|\b(?:AND|OR|NOT)\b/;
const QUOTED = /"(?:[^"\\]|\\.)*"?|'(?:[^'\\]|\\.)*'?/g;

/** The ListTasks / WatchTasks fields the search box's `text` means (both empty for no search). */
export function searchFields(text: string): { filter: string; query: string } {
  const trimmed = text.trim();
  if (FILTER_SYNTAX.test(trimmed.replace(QUOTED, " "))) return { filter: trimmed, query: "" };
  return { filter: "", query: trimmed };
}
