import { useEffect, useMemo, useState } from "react";
import {
  ASSISTANTS,
  assistantName,
  filterAccounts,
  nextSort,
  NO_FILTERS,
  sortAccounts,
  STATUS_KEYS,
  statusKey,
  watchRequest,
  type Filters,
  type Sort,
  type SortKey,
} from "../accounts";
import { sessions, useFail } from "../api";
import { retryable } from "../errors";
import { formatFull, formatTime, proxyHost, toDate } from "../format";
import type { Account } from "../gen/aap/v1/sessions_pb";
import { useDebounced, useNow } from "../hooks";
import { navigate } from "../router";
import { follow, type StreamState } from "../stream";
import { OutcomeBadge, StatusBadge } from "./widgets";

const COLUMNS: { key: SortKey; label: string; title: string; numeric?: boolean }[] = [
  { key: "assistant", label: "Assistant", title: "assistant" },
  { key: "plan", label: "Plan", title: "plan" },
  { key: "label", label: "Label", title: "the operator's name for the account" },
  { key: "status", label: "Status", title: "status, by severity" },
  { key: "rotation_runs", label: "Rot.", title: "evaluations in the current rotation", numeric: true },
  { key: "runs", label: "Runs", title: "evaluations so far", numeric: true },
  { key: "last_lease", label: "Last lease", title: "the latest lease: bot, when, outcome" },
  { key: "challenges", label: "Chall.", title: "bot challenges met so far", numeric: true },
  { key: "rate_limits", label: "Limits", title: "rate limits met so far", numeric: true },
  { key: "proxy", label: "Proxy", title: "proxy host" },
  { key: "user_agent", label: "User agent", title: "user agent" },
  { key: "state_refreshed_at", label: "Refreshed", title: "when the session state was stored" },
  { key: "failures", label: "Fail.", title: "failed attempts reported", numeric: true },
];

export function Accounts() {
  const fail = useFail();
  const [filters, setFilters] = useState<Filters>(NO_FILTERS);
  const [sort, setSort] = useState<Sort | undefined>();
  const [accounts, setAccounts] = useState<Account[]>([]);
  // The request the list answers: until the stream answers the current filters, the table is
  // the old list filtered here, which misses rows when a filter was widened.
  const [listFor, setListFor] = useState<string | undefined>();
  const [loaded, setLoaded] = useState(false);
  const [live, setLive] = useState<StreamState>("reconnecting");
  const [error, setError] = useState("");
  const [plans, setPlans] = useState<string[]>([]);
  const now = useNow(15_000);

  // The plan is typed: restart the stream once typing pauses, not on every key.
  const plan = useDebounced(filters.plan, 400);
  const { assistant, status } = filters;

  useEffect(() => {
    const abort = new AbortController();
    void follow(
      abort.signal,
      async (received) => {
        const request = watchRequest({ assistant, plan, status });
        const stream = sessions.watchAccounts(request, { signal: abort.signal });
        for await (const res of stream) {
          received();
          setError("");
          setLoaded(true);
          setAccounts(res.accounts);
          setListFor(JSON.stringify(request));
          setPlans((known) => {
            const all = new Set(known);
            for (const a of res.accounts) if (a.plan) all.add(a.plan);
            return all.size === known.length ? known : [...all].sort();
          });
        }
        return false;
      },
      setLive,
      (err) => {
        setError(fail(err));
        return retryable(err);
      },
    );
    return () => abort.abort();
  }, [assistant, plan, status, fail]);

  const rows = useMemo(() => sortAccounts(filterAccounts(accounts, filters), sort), [accounts, filters, sort]);

  const updating = listFor !== JSON.stringify(watchRequest(filters));
  const set = (patch: Partial<Filters>) => setFilters((f) => ({ ...f, ...patch }));

  return (
    <section className="page">
      <div className="page-head">
        <h1>Accounts</h1>
        <span id="live" className={`live live-${live}`} data-state={live}>
          {live === "live" ? "live" : loaded ? "reconnecting…" : "connecting…"}
        </span>
        <span className="spacer" />
        <button type="button" id="add-account" className="primary" onClick={() => navigate({ page: "add" })}>
          Add account
        </button>
      </div>
      <div className="filters">
        <label>
          Assistant
          <select id="filter-assistant" value={filters.assistant} onChange={(e) => set({ assistant: e.target.value })}>
            <option value="">All</option>
            {ASSISTANTS.map((a) => (
              <option key={a.id} value={a.id}>
                {a.name}
              </option>
            ))}
          </select>
        </label>
        <label>
          Plan
          <input
            id="filter-plan"
            list="known-plans"
            placeholder="any"
            value={filters.plan}
            onChange={(e) => set({ plan: e.target.value })}
          />
          <datalist id="known-plans">
            {plans.map((p) => (
              <option key={p} value={p} />
            ))}
          </datalist>
        </label>
        <label>
          Status
          <select id="filter-status" value={filters.status} onChange={(e) => set({ status: e.target.value })}>
            <option value="">All</option>
            {STATUS_KEYS.map((s) => (
              <option key={s} value={s}>
                {s}
              </option>
            ))}
          </select>
        </label>
        <span className="count muted">{updating && loaded ? "updating…" : `${rows.length} of ${accounts.length}`}</span>
      </div>
      {error && <p className="error">{error}</p>}
      <div className="table-wrap">
        <table id="accounts" className={`grid${updating && loaded ? " updating" : ""}`} aria-busy={updating}>
          <thead>
            <tr>
              {COLUMNS.map((c) => {
                const active = sort?.key === c.key ? sort.dir : undefined;
                return (
                  <th
                    key={c.key}
                    data-sort={c.key}
                    title={c.title}
                    className={`sortable${c.numeric ? " num" : ""}${active ? ` sorted-${active}` : ""}`}
                    aria-sort={active === "asc" ? "ascending" : active === "desc" ? "descending" : "none"}
                    onClick={() => setSort((s) => nextSort(s, c.key))}
                  >
                    {c.label}
                  </th>
                );
              })}
            </tr>
          </thead>
          <tbody>
            {rows.map((a) => (
              <AccountRow key={a.id} account={a} now={now} />
            ))}
            {rows.length === 0 && (
              <tr className="empty">
                <td colSpan={COLUMNS.length}>{loaded ? "No accounts match." : "Loading…"}</td>
              </tr>
            )}
          </tbody>
        </table>
      </div>
    </section>
  );
}

function AccountRow({ account: a, now }: { account: Account; now: Date }) {
  const lease = a.lastLease;
  const leasedAt = toDate(lease?.leasedAt);
  const refreshed = toDate(a.stateRefreshedAt);
  return (
    <tr
      data-testid="account-row"
      data-account-id={a.id}
      data-label={a.label}
      data-status={statusKey(a.status)}
      className="clickable"
      onClick={() => navigate({ page: "account", id: a.id })}
    >
      <td>{assistantName(a.assistant)}</td>
      <td>{a.plan}</td>
      <td className="label-cell">
        <a href={`#/accounts/${encodeURIComponent(a.id)}`} onClick={(e) => e.stopPropagation()}>
          {a.label || a.id}
        </a>
      </td>
      <td>
        <StatusBadge account={a} now={now} />
      </td>
      <td className="num">{a.rotationRuns.toString()}</td>
      <td className="num">{a.runs.toString()}</td>
      <td className="lease-cell">
        {lease ? (
          <>
            <span className="mono">{lease.botId}</span>{" "}
            <span title={formatFull(leasedAt)}>{formatTime(leasedAt, now)}</span>{" "}
            <OutcomeBadge outcome={lease.outcome} />
          </>
        ) : (
          <span className="muted">never</span>
        )}
      </td>
      <td className="num" title={`${a.proxyChallenges} since the current proxy was set`}>
        {a.challenges.toString()}
      </td>
      <td className="num">{a.rateLimits.toString()}</td>
      <td className="mono">{proxyHost(a.proxy) || <span className="muted">none</span>}</td>
      <td className="ua" title={a.userAgent || "derived from the account id"}>
        {a.userAgent || <span className="muted">derived</span>}
      </td>
      <td title={formatFull(refreshed)}>{formatTime(refreshed, now)}</td>
      <td className="num">{a.failures.toString()}</td>
    </tr>
  );
}
