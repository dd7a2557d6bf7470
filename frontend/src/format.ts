// Numbers and times for people. The same rules as the server's templates
// (src/rts_monitor/console/pages.py), so a value updated live reads like the one rendered.

const DASH = "–";

function grouped(value: number, digits: number): string {
  return value.toLocaleString("en-US", { minimumFractionDigits: digits, maximumFractionDigits: digits });
}

export function number(value: number | null | undefined, digits = 1): string {
  if (value === null || value === undefined || !Number.isFinite(value)) return DASH;
  return grouped(value, digits);
}

export function percent(value: number | null | undefined): string {
  return value === null || value === undefined ? DASH : `${number(value)} %`;
}

export function gigabytes(value: number | null | undefined): string {
  return value === null || value === undefined ? DASH : `${number(value)} GB`;
}

const BYTE_UNITS = ["B", "kB", "MB", "GB", "TB", "PB"];

/** Decimal units, as network and disk vendors count: "8.5 GB", "120 kB/s". */
export function bytes(value: number | null | undefined, suffix = ""): string {
  if (value === null || value === undefined || !Number.isFinite(value)) return DASH;
  let v = value;
  let unit = 0;
  while (Math.abs(v) >= 1000 && unit < BYTE_UNITS.length - 1) {
    v /= 1000;
    unit += 1;
  }
  const digits = unit === 0 || Math.abs(v) >= 100 ? 0 : 1;
  return `${grouped(v, digits)} ${BYTE_UNITS[unit]}${suffix}`;
}

export function rate(value: number | null | undefined): string {
  return bytes(value, "/s");
}

/** "3 d 4 h", "5 h 12 min", "42 min", "30 s". */
export function duration(seconds: number | null | undefined): string {
  if (seconds === null || seconds === undefined || !Number.isFinite(seconds)) return DASH;
  let s = Math.floor(seconds);
  const days = Math.floor(s / 86400);
  s -= days * 86400;
  const hours = Math.floor(s / 3600);
  s -= hours * 3600;
  const minutes = Math.floor(s / 60);
  const secs = s - minutes * 60;
  if (days) return hours ? `${days} d ${hours} h` : `${days} d`;
  if (hours) return minutes ? `${hours} h ${minutes} min` : `${hours} h`;
  if (minutes) return `${minutes} min`;
  return `${secs} s`;
}

export function ago(iso: string | null | undefined, now = Date.now()): string {
  if (!iso) return "never";
  const seconds = (now - Date.parse(iso)) / 1000;
  if (seconds < 60) return "just now";
  if (seconds < 3600) return `${Math.floor(seconds / 60)} min ago`;
  if (seconds < 86400) return `${Math.floor(seconds / 3600)} h ago`;
  return `${Math.floor(seconds / 86400)} d ago`;
}

const LOCAL = new Intl.DateTimeFormat(undefined, {
  year: "numeric", month: "short", day: "numeric", hour: "2-digit", minute: "2-digit",
});

/** The viewer's local time ("29 Nov 2026, 14:05"). */
export function local(iso: string): string {
  return LOCAL.format(new Date(iso));
}

/** The UTC text shown on hover ("2026-11-29 13:05 UTC"). */
export function utc(iso: string): string {
  return new Date(iso).toISOString().slice(0, 16).replace("T", " ") + " UTC";
}

/** Server-rendered <time> elements: absolute ones to local time, relative ones kept fresh. */
export function refreshTimes(root: ParentNode = document): void {
  for (const el of root.querySelectorAll<HTMLTimeElement>("time[datetime]")) {
    const iso = el.dateTime;
    if (!iso) continue;
    el.title = utc(iso);
    el.textContent = el.classList.contains("rel") ? ago(iso) : local(iso);
    if (el.classList.contains("rel")) el.title = `${local(iso)} (${utc(iso)})`;
  }
}

/** A <time> element for a value that arrived live. */
export function timeElement(iso: string | null, relative: boolean): HTMLElement {
  if (!iso) {
    const none = document.createElement("span");
    none.className = "muted";
    none.textContent = "never";
    return none;
  }
  const el = document.createElement("time");
  el.dateTime = iso;
  el.className = relative ? "rel" : "t";
  refreshTimes(wrap(el));
  return el;
}

function wrap(el: Element): ParentNode {
  const holder = document.createElement("span");
  holder.appendChild(el);
  return holder;
}
