import type { Account } from "./gen/aap/v1/sessions_pb";
import { AccountStatus } from "./gen/aap/v1/sessions_pb";
import type { MessageInitShape } from "@bufbuild/protobuf";
import type { WatchAccountsRequestSchema } from "./gen/aap/v1/sessions_pb";
import { formatSpan, formatTime, proxyHost, toDate } from "./format";

/** The assistants the platform serves, by their lowercase ids, with names for people. */
export const ASSISTANTS: readonly { id: string; name: string }[] = [
  { id: "chatgpt", name: "ChatGPT" },
  { id: "claude", name: "Claude" },
  { id: "perplexity", name: "Perplexity" },
  { id: "google-ai-overview", name: "Google AI Overview" },
];

export function assistantName(id: string): string {
  return ASSISTANTS.find((a) => a.id === id)?.name ?? id;
}

export type StatusKey = "active" | "cooling" | "challenged" | "expired" | "disabled" | "unknown";

/** The statuses an operator filters by, in the order of the filter's options. */
export const STATUS_KEYS: readonly Exclude<StatusKey, "unknown">[] = [
  "active",
  "cooling",
  "challenged",
  "expired",
  "disabled",
];

const STATUS_BY_KEY: Record<Exclude<StatusKey, "unknown">, AccountStatus> = {
  active: AccountStatus.ACTIVE,
  cooling: AccountStatus.COOLING,
  challenged: AccountStatus.CHALLENGED,
  expired: AccountStatus.EXPIRED,
  disabled: AccountStatus.DISABLED,
};

/** The lowercase name of a status, as `data-status` carries it. */
export function statusKey(status: AccountStatus): StatusKey {
  switch (status) {
    case AccountStatus.ACTIVE:
      return "active";
    case AccountStatus.COOLING:
      return "cooling";
    case AccountStatus.CHALLENGED:
      return "challenged";
    case AccountStatus.EXPIRED:
      return "expired";
    case AccountStatus.DISABLED:
      return "disabled";
    case AccountStatus.UNSPECIFIED:
      return "unknown";
  }
}

export function statusFromKey(key: string): AccountStatus | undefined {
  return key in STATUS_BY_KEY ? STATUS_BY_KEY[key as keyof typeof STATUS_BY_KEY] : undefined;
}

/** Until when a cooling or challenged status lasts: `until 14:05:00 (in 12 min)`; else ''. */
function cooldownText(account: Account, status: AccountStatus, now: Date): string {
  if (status !== AccountStatus.COOLING && status !== AccountStatus.CHALLENGED) return "";
  const until = toDate(account.cooldownUntil);
  if (!until) return "";
  const left = until.getTime() - now.getTime();
  return `until ${formatTime(until, now)} (${left > 0 ? `in ${formatSpan(left)}` : "over"})`;
}

/** Until when an account at its hourly budget is not lent: `at its hourly budget (40) until 14:05:00 (in 12 min)`; else ''. */
function budgetText(account: Account, now: Date): string {
  const until = toDate(account.budgetFreesAt);
  if (!until) return "";
  const left = until.getTime() - now.getTime();
  return `at its hourly budget (${account.hourlyBudget}) until ${formatTime(until, now)} (${left > 0 ? `in ${formatSpan(left)}` : "over"})`;
}

/**
 * The status in two parts, as the table shows it: the badge (`cooling`) and what qualifies it
 * (`until 14:05:00 (in 12 min)`; for an active account at its hourly budget, until when it is
 * not lent; for a disabled account the status that enabling brings back, `was cooling until …`).
 */
export function statusParts(account: Account, now: Date = new Date()): { badge: StatusKey; detail: string } {
  const badge = statusKey(account.status);
  if (account.status === AccountStatus.ACTIVE) {
    return { badge, detail: budgetText(account, now) };
  }
  if (account.status !== AccountStatus.DISABLED) {
    return { badge, detail: cooldownText(account, account.status, now) };
  }
  const under = account.underlyingStatus;
  if (under === AccountStatus.UNSPECIFIED || under === AccountStatus.DISABLED) return { badge, detail: "" };
  const until = cooldownText(account, under, now);
  return { badge, detail: `was ${statusKey(under)}${until ? ` ${until}` : ""}` };
}

/**
 * The status in words: `cooling until 14:05:00 (in 12 min)`, `disabled (was active)`, `active,
 * at its hourly budget (40) until 14:05:00 (in 12 min)`.
 */
export function statusText(account: Account, now: Date = new Date()): string {
  const { badge, detail } = statusParts(account, now);
  if (!detail) return badge;
  if (account.status === AccountStatus.DISABLED) return `${badge} (${detail})`;
  return account.status === AccountStatus.ACTIVE ? `${badge}, ${detail}` : `${badge} ${detail}`;
}

/** Why it cools down, while that matters (cooling or challenged, or disabled over one of them). */
export function cooldownReason(account: Account): string {
  const effective = account.status === AccountStatus.DISABLED ? account.underlyingStatus : account.status;
  if (effective !== AccountStatus.COOLING && effective !== AccountStatus.CHALLENGED) return "";
  return account.cooldownReason;
}

export interface Filters {
  /** An assistant id; '' for all. */
  assistant: string;
  /** A plan, compared trimmed and case-insensitively as the server does; '' for all. */
  plan: string;
  /** A status key; '' for all. */
  status: string;
}

export const NO_FILTERS: Filters = { assistant: "", plan: "", status: "" };

/** The stream request for the filters. */
export function watchRequest(filters: Filters): MessageInitShape<typeof WatchAccountsRequestSchema> {
  const status = statusFromKey(filters.status);
  return {
    assistant: filters.assistant,
    plan: filters.plan.trim(),
    statuses: status === undefined ? [] : [status],
  };
}

/**
 * The same filtering on this side, so that a change shows at once, before the stream restarts
 * with the new request.
 */
export function filterAccounts(accounts: readonly Account[], filters: Filters): Account[] {
  const plan = filters.plan.trim().toLowerCase();
  const status = statusFromKey(filters.status);
  return accounts.filter(
    (a) =>
      (!filters.assistant || a.assistant === filters.assistant) &&
      (!plan || a.plan.trim().toLowerCase() === plan) &&
      (status === undefined || a.status === status),
  );
}

export type SortKey =
  | "assistant"
  | "plan"
  | "label"
  | "status"
  | "rotation_runs"
  | "runs"
  | "last_lease"
  | "challenges"
  | "rate_limits"
  | "proxy"
  | "user_agent"
  | "state_refreshed_at"
  | "failures";

export interface Sort {
  key: SortKey;
  dir: "asc" | "desc";
}

/** Severity order: what needs an operator sorts last ascending, first descending. */
const STATUS_RANK: Record<AccountStatus, number> = {
  [AccountStatus.UNSPECIFIED]: -1,
  [AccountStatus.ACTIVE]: 0,
  [AccountStatus.COOLING]: 1,
  [AccountStatus.CHALLENGED]: 2,
  [AccountStatus.EXPIRED]: 3,
  [AccountStatus.DISABLED]: 4,
};

function millis(a: Account, key: "last_lease" | "state_refreshed_at"): number {
  const ts = key === "last_lease" ? a.lastLease?.leasedAt : a.stateRefreshedAt;
  return toDate(ts)?.getTime() ?? -Infinity;
}

function sortValue(a: Account, key: SortKey): string | number | bigint {
  switch (key) {
    case "assistant":
      return assistantName(a.assistant).toLowerCase();
    case "plan":
      return a.plan.toLowerCase();
    case "label":
      return a.label.toLowerCase();
    case "status":
      return STATUS_RANK[a.status] ?? -1;
    case "rotation_runs":
      return a.rotationRuns;
    case "runs":
      return a.runs;
    case "last_lease":
      return millis(a, "last_lease");
    case "state_refreshed_at":
      return millis(a, "state_refreshed_at");
    case "challenges":
      return a.challenges;
    case "rate_limits":
      return a.rateLimits;
    case "proxy":
      return proxyHost(a.proxy).toLowerCase();
    case "user_agent":
      return a.userAgent.toLowerCase();
    case "failures":
      return a.failures;
  }
}

function compare(x: string | number | bigint, y: string | number | bigint): number {
  if (typeof x === "string" && typeof y === "string") return x.localeCompare(y);
  return x < y ? -1 : x > y ? 1 : 0;
}

/**
 * The accounts sorted by one column; ties keep the server's order (assistant, plan, label), so
 * rows do not jump about when the stream sends the list again.
 */
export function sortAccounts(accounts: readonly Account[], sort: Sort | undefined): Account[] {
  const indexed = accounts.map((a, i) => ({ a, i }));
  if (sort) {
    const sign = sort.dir === "asc" ? 1 : -1;
    indexed.sort((p, q) => sign * compare(sortValue(p.a, sort.key), sortValue(q.a, sort.key)) || p.i - q.i);
  }
  return indexed.map((p) => p.a);
}

/** The sort after a click on a column header: ascending first, then the other way. */
export function nextSort(current: Sort | undefined, key: SortKey): Sort {
  if (current?.key === key) return { key, dir: current.dir === "asc" ? "desc" : "asc" };
  return { key, dir: "asc" };
}

export interface EditableFields {
  proxy: string;
  userAgent: string;
  label: string;
}

/**
 * The UpdateAccount fields the operator changed, or undefined when nothing changed: a field left
 * out is left alone by the server, so only edits are sent.
 */
export function accountChanges(account: EditableFields, form: EditableFields): Partial<EditableFields> | undefined {
  const changes: Partial<EditableFields> = {};
  if (form.proxy.trim() !== account.proxy) changes.proxy = form.proxy.trim();
  if (form.userAgent.trim() !== account.userAgent) changes.userAgent = form.userAgent.trim();
  if (form.label.trim() !== account.label) changes.label = form.label.trim();
  return Object.keys(changes).length ? changes : undefined;
}
