// What the page exposes on window.rtsConsole: its charts (with the data each was given and how
// long fetching and drawing took), live arrivals and timings. Read by the browser tests and
// benchmarks/console.py; handy in the developer console too.

import type { Chart } from "./charts";
import * as format from "./format";
import { received } from "./live";

export const registry = {
  charts: {} as Record<string, Chart>,
  timings: {} as Record<string, number>,
  samplesShown: [] as { at: string; shownAt: number }[],
  live: received,
  format,
};

declare global {
  interface Window {
    rtsConsole: typeof registry;
  }
}

window.rtsConsole = registry;
