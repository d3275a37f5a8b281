import type { Timestamp } from "@bufbuild/protobuf/wkt";
import { timestampDate } from "@bufbuild/protobuf/wkt";

/** The timestamp as a Date, or undefined when the field is absent. */
export function toDate(ts: Timestamp | undefined): Date | undefined {
  return ts ? timestampDate(ts) : undefined;
}

function pad(n: number): string {
  return n.toString().padStart(2, "0");
}

/**
 * A local time the way an operator scans a table: `HH:MM:SS` for today, `YYYY-MM-DD HH:MM`
 * otherwise; an en dash when absent.
 */
export function formatTime(date: Date | undefined, now: Date = new Date()): string {
  if (!date) return "–";
  const time = `${pad(date.getHours())}:${pad(date.getMinutes())}`;
  const sameDay =
    date.getFullYear() === now.getFullYear() && date.getMonth() === now.getMonth() && date.getDate() === now.getDate();
  if (sameDay) return `${time}:${pad(date.getSeconds())}`;
  return `${date.getFullYear()}-${pad(date.getMonth() + 1)}-${pad(date.getDate())} ${time}`;
}

/** The full local date and time, for title attributes and detail pages. */
export function formatFull(date: Date | undefined): string {
  if (!date) return "–";
  return (
    `${date.getFullYear()}-${pad(date.getMonth() + 1)}-${pad(date.getDate())} ` +
    `${pad(date.getHours())}:${pad(date.getMinutes())}:${pad(date.getSeconds())}`
  );
}

/** A span such as `4 min`, `2 h 5 min`, `12 s`; negative spans count as zero. */
export function formatSpan(ms: number): string {
  const s = Math.max(0, Math.round(ms / 1000));
  if (s < 60) return `${s} s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m} min`;
  const h = Math.floor(m / 60);
  if (h < 48) return m % 60 ? `${h} h ${m % 60} min` : `${h} h`;
  return `${Math.floor(h / 24)} d`;
}

/** A countdown as `M:SS`, for the remote login's idle deadline. */
export function formatCountdown(ms: number): string {
  const s = Math.max(0, Math.ceil(ms / 1000));
  return `${Math.floor(s / 60)}:${pad(s % 60)}`;
}

/** The host (and port) of a proxy URL as the server gives it; the whole string if it is not one. */
export function proxyHost(proxy: string): string {
  if (!proxy) return "";
  try {
    return new URL(proxy).host || proxy;
  } catch {
    return proxy;
  }
}
