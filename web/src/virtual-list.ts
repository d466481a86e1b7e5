// A scrolling list that keeps only the rows in view (plus a few) in the DOM, through TanStack
// Virtual's framework-free core: a column of 100,000 cards costs the page a few dozen nodes.

import {
  Virtualizer,
  elementScroll,
  measureElement,
  observeElementOffset,
  observeElementRect,
} from "@tanstack/virtual-core";

export interface VirtualListOptions<T> {
  /** The stable key of an item; a row is rebuilt when its item object or `signature` changes. */
  key(item: T): string;
  /** What else a row shows that is not in its item (a card's subtasks). */
  signature(item: T): string;
  row(item: T): HTMLElement;
  /** Called when the last rows come into view: the owner may load more. */
  nearEnd(): void;
  estimateSize: number;
  gap: number;
}

const OVERSCAN = 4;
const NEAR_END_ROWS = 10;

export class VirtualList<T> {
  /** The element that holds the rows: the drop target for drag and drop. */
  readonly rows: HTMLElement;
  private items: readonly T[] = [];
  private readonly virtualizer: Virtualizer<HTMLElement, HTMLElement>;
  private readonly rendered = new Map<string, { item: T; signature: string; element: HTMLElement }>();
  private readonly unmount: () => void;
  private frozen = false;

  constructor(
    readonly scroller: HTMLElement,
    private readonly options: VirtualListOptions<T>,
  ) {
    this.rows = document.createElement("div");
    this.rows.className = "rows";
    scroller.append(this.rows);
    this.virtualizer = new Virtualizer<HTMLElement, HTMLElement>({
      count: 0,
      getScrollElement: () => scroller,
      estimateSize: () => options.estimateSize,
      overscan: OVERSCAN,
      gap: options.gap,
      getItemKey: (index) => options.key(this.items[index]),
      observeElementRect,
      observeElementOffset,
      scrollToFn: elementScroll,
      measureElement,
      onChange: () => this.render(),
    });
    this.unmount = this.virtualizer._didMount();
    this.virtualizer._willUpdate();
  }

  /** Replace the items (in display order) and redraw what is in view. */
  setItems(items: readonly T[]): void {
    this.items = items;
    this.virtualizer.setOptions({ ...this.virtualizer.options, count: items.length });
    this.virtualizer._willUpdate();
    this.render();
  }

  /** Stop redrawing (while a card is being dragged, so its node stays put); `thaw` redraws. */
  freeze(): void {
    this.frozen = true;
  }

  thaw(): void {
    this.frozen = false;
    this.render();
  }

  /** Bring the row of `key` into view (for a card moved by keyboard, which keeps its focus). */
  reveal(key: string): HTMLElement | null {
    const index = this.items.findIndex((item) => this.options.key(item) === key);
    if (index < 0) return null;
    this.virtualizer.scrollToIndex(index, { align: "auto" });
    this.render();
    return this.rendered.get(key)?.element ?? null;
  }

  destroy(): void {
    this.unmount();
    this.rows.remove();
  }

  private render(): void {
    if (this.frozen) return;
    const visible = this.virtualizer.getVirtualItems();
    this.rows.style.height = `${this.virtualizer.getTotalSize()}px`;
    const keep = new Set<string>();
    for (const row of visible) {
      const item = this.items[row.index];
      if (item === undefined) continue;
      const key = this.options.key(item);
      keep.add(key);
      let entry = this.rendered.get(key);
      const signature = this.options.signature(item);
      if (!entry || entry.item !== item || entry.signature !== signature) {
        const element = this.options.row(item);
        element.classList.add("row");
        const focused = entry?.element.contains(document.activeElement) ? document.activeElement : null;
        if (entry) entry.element.replaceWith(element);
        else this.rows.append(element);
        entry = { item, signature, element };
        this.rendered.set(key, entry);
        if (focused instanceof HTMLElement) refocus(element, focused);
      }
      entry.element.dataset.index = String(row.index);
      entry.element.style.transform = `translateY(${row.start}px)`;
      this.virtualizer.measureElement(entry.element);
    }
    for (const [key, entry] of this.rendered) {
      if (keep.has(key)) continue;
      entry.element.remove();
      this.rendered.delete(key);
    }
    const last = visible.at(-1);
    if (last && last.index >= this.items.length - NEAR_END_ROWS) this.options.nearEnd();
  }
}

/** Keep keyboard focus on the same control when a row is rebuilt under it. */
function refocus(row: HTMLElement, was: HTMLElement): void {
  const key = was.dataset.focusKey;
  const target = key ? row.querySelector<HTMLElement>(`[data-focus-key="${CSS.escape(key)}"]`) : null;
  (target ?? (row.dataset.focusKey === key ? row : null))?.focus();
}
