import { useEffect, useRef, useState, type FormEvent, type ReactNode } from "react";
import { accountChanges, assistantName, statusKey } from "../accounts";
import { logins, sessions, useFail } from "../api";
import { formatFull, toDate } from "../format";
import type { Account, EvidenceCase, Lease } from "../gen/aap/v1/sessions_pb";
import { AccountStatus } from "../gen/aap/v1/sessions_pb";
import { useNow } from "../hooks";
import { navigate } from "../router";
import { OutcomeBadge, StatusBadge } from "./widgets";

export function AccountDetail({ id }: { id: string }) {
  const fail = useFail();
  const [account, setAccount] = useState<Account | undefined>();
  const [loadError, setLoadError] = useState("");
  const [error, setError] = useState("");
  const [busy, setBusy] = useState(false);
  const [confirming, setConfirming] = useState(false);
  const [leases, setLeases] = useState<Lease[]>([]);
  const [cases, setCases] = useState<EvidenceCase[]>([]);
  const now = useNow(15_000);

  const [reloads, setReloads] = useState(0);

  useEffect(() => {
    const abort = new AbortController();
    const { signal } = abort;
    Promise.all([
      sessions.getAccount({ accountId: id }, { signal }),
      sessions.listLeases({ accountId: id, limit: 100 }, { signal }),
      sessions.listEvidence({ accountId: id, limit: 100 }, { signal }),
    ]).then(
      ([acc, ls, ev]) => {
        setAccount(acc.account);
        setLeases(ls.leases);
        setCases(ev.cases);
        setLoadError("");
      },
      (err: unknown) => {
        if (!signal.aborted) setLoadError(fail(err));
      },
    );
    return () => abort.abort();
  }, [id, fail, reloads]);

  /** Runs an action; its errors go to #account-error. */
  const act = async (action: () => Promise<void>) => {
    setBusy(true);
    setError("");
    try {
      await action();
    } catch (err) {
      setError(fail(err));
    } finally {
      setBusy(false);
    }
  };

  if (!account) {
    return (
      <section className="page">
        <BackLink />
        {loadError ? (
          <p id="account-error" className="error">
            {loadError}
          </p>
        ) : (
          <p className="muted">Loading…</p>
        )}
      </section>
    );
  }

  const disabled = account.status === AccountStatus.DISABLED;
  const resting = (status: AccountStatus) => status === AccountStatus.COOLING || status === AccountStatus.CHALLENGED;
  const cooling = resting(disabled ? account.underlyingStatus : account.status);

  return (
    <section className="page" id="account" data-account-id={account.id} data-status={statusKey(account.status)}>
      <BackLink />
      <div className="page-head">
        <h1>
          {account.label || account.id}{" "}
          <span className="muted">
            {assistantName(account.assistant)} · {account.plan}
          </span>
        </h1>
        <span className="spacer" />
        <div className="actions">
          <button type="button" onClick={() => setReloads((n) => n + 1)} disabled={busy}>
            Reload
          </button>
          <button
            type="button"
            id="refresh-login"
            disabled={busy}
            onClick={() =>
              void act(async () => {
                const res = await logins.startRemoteLogin({ accountId: account.id });
                if (res.login) navigate({ page: "login", id: res.login.id });
              })
            }
          >
            Refresh login
          </button>
          {cooling && (
            <button
              type="button"
              id="end-cooldown"
              title="Lend it again now: after upgrading its plan, or when the site's limit lifted earlier than it said"
              disabled={busy}
              onClick={() =>
                void act(async () => {
                  const res = await sessions.updateAccount({ accountId: account.id, endCooldown: true });
                  if (res.account) setAccount(res.account);
                })
              }
            >
              End cool-down
            </button>
          )}
          {disabled ? (
            <button
              type="button"
              id="enable"
              disabled={busy}
              onClick={() =>
                void act(async () => {
                  const res = await sessions.enableAccount({ accountId: account.id });
                  if (res.account) setAccount(res.account);
                })
              }
            >
              Enable
            </button>
          ) : (
            <button
              type="button"
              id="disable"
              disabled={busy}
              onClick={() =>
                void act(async () => {
                  const res = await sessions.disableAccount({ accountId: account.id });
                  if (res.account) setAccount(res.account);
                })
              }
            >
              Disable
            </button>
          )}
          {confirming ? (
            <span className="confirm">
              Delete with its session, leases and evidence?
              <button
                type="button"
                id="confirm-delete"
                className="danger"
                disabled={busy}
                onClick={() =>
                  void act(async () => {
                    await sessions.deleteAccount({ accountId: account.id });
                    navigate({ page: "accounts" });
                  })
                }
              >
                Delete
              </button>
              <button type="button" onClick={() => setConfirming(false)}>
                Keep
              </button>
            </span>
          ) : (
            <button type="button" id="delete" className="danger" disabled={busy} onClick={() => setConfirming(true)}>
              Delete…
            </button>
          )}
        </div>
      </div>
      {(error || loadError) && (
        <p id="account-error" className="error" role="alert">
          {error || loadError}
        </p>
      )}
      <div className="columns">
        <Fields account={account} now={now} />
        <EditForm account={account} onSaved={setAccount} />
      </div>
      <Leases leases={leases} />
      <Evidence cases={cases} />
    </section>
  );
}

function BackLink() {
  return (
    <button type="button" id="back" className="link" onClick={() => navigate({ page: "accounts" })}>
      ← Accounts
    </button>
  );
}

function Fields({ account: a, now }: { account: Account; now: Date }) {
  const rows: [string, ReactNode][] = [
    ["Id", <span className="mono">{a.id}</span>],
    ["Assistant", assistantName(a.assistant)],
    ["Plan", a.plan],
    ["Label", a.label],
    ["Status", <StatusBadge account={a} now={now} />],
    ["Cooling until", formatFull(toDate(a.cooldownUntil))],
    ["Leased now", a.leased ? "yes" : "no"],
    ["Runs (rotation / total)", `${a.rotationRuns} / ${a.runs}`],
    [
      "Prompts this hour",
      a.hourlyBudget > 0 ? `${a.promptsThisHour} of a budget of ${a.hourlyBudget}` : `${a.promptsThisHour} (no budget)`,
    ],
    ["Last leased", formatFull(toDate(a.lastLeasedAt))],
    [
      "Last lease",
      a.lastLease ? (
        <>
          <span className="mono">{a.lastLease.botId}</span> ({a.lastLease.principal}){" "}
          <OutcomeBadge outcome={a.lastLease.outcome} />
        </>
      ) : (
        "never"
      ),
    ],
    ["Challenges", `${a.challenges} (${a.proxyChallenges} since the current proxy)`],
    ["Last challenged", formatFull(toDate(a.lastChallengedAt))],
    ["Rate limits", a.rateLimits.toString()],
    ["Failures", a.failures.toString()],
    ["Proxy", a.proxy ? <span className="mono">{a.proxy}</span> : "none"],
    ["User agent", a.userAgent || "derived from the account id"],
    ["State refreshed", formatFull(toDate(a.stateRefreshedAt))],
    ["Created", formatFull(toDate(a.createdAt))],
  ];
  return (
    <dl className="card fields">
      {rows.map(([name, value]) => (
        <div key={name} className="field">
          <dt>{name}</dt>
          <dd>{value}</dd>
        </div>
      ))}
    </dl>
  );
}

function EditForm({ account, onSaved }: { account: Account; onSaved: (a: Account) => void }) {
  const fail = useFail();
  const [proxy, setProxy] = useState(account.proxy);
  const [userAgent, setUserAgent] = useState(account.userAgent);
  const [label, setLabel] = useState(account.label);
  const [message, setMessage] = useState("");
  const [error, setError] = useState("");
  const [busy, setBusy] = useState(false);

  const changes = accountChanges(account, { proxy, userAgent, label });

  const save = async (e: FormEvent) => {
    e.preventDefault();
    if (!changes) return;
    setBusy(true);
    setError("");
    setMessage("");
    try {
      const res = await sessions.updateAccount({ accountId: account.id, ...changes });
      if (res.account) {
        onSaved(res.account);
        setProxy(res.account.proxy);
        setUserAgent(res.account.userAgent);
        setLabel(res.account.label);
      }
      setMessage("saved");
    } catch (err) {
      setError(fail(err));
    } finally {
      setBusy(false);
    }
  };

  return (
    <form className="card edit" onSubmit={(e) => void save(e)}>
      <h2>Settings</h2>
      <label htmlFor="edit-label">Label</label>
      <input id="edit-label" value={label} onChange={(e) => setLabel(e.target.value)} />
      <label htmlFor="edit-proxy">Proxy</label>
      <input
        id="edit-proxy"
        placeholder="none (http://, https:// or socks5://host:port)"
        value={proxy}
        onChange={(e) => setProxy(e.target.value)}
      />
      <label htmlFor="edit-user-agent">User agent</label>
      <input
        id="edit-user-agent"
        placeholder="derived from the account id"
        value={userAgent}
        onChange={(e) => setUserAgent(e.target.value)}
      />
      <div className="form-foot">
        <button id="save-account" type="submit" className="primary" disabled={busy || !changes}>
          Save
        </button>
        {message && !changes && <span className="ok">{message}</span>}
      </div>
      {error && (
        <p className="error" role="alert">
          {error}
        </p>
      )}
    </form>
  );
}

function Leases({ leases }: { leases: Lease[] }) {
  return (
    <div className="card">
      <h2>Leases</h2>
      <table className="grid" id="leases">
        <thead>
          <tr>
            <th>Bot</th>
            <th>Principal</th>
            <th>Leased at</th>
            <th>Returned at</th>
            <th>Outcome</th>
            <th className="num">Runs</th>
            <th>Detail</th>
          </tr>
        </thead>
        <tbody>
          {leases.map((l) => (
            <tr key={l.id} data-testid="lease-row" data-lease-id={l.id}>
              <td className="mono">{l.botId}</td>
              <td>{l.principal}</td>
              <td>{formatFull(toDate(l.leasedAt))}</td>
              <td>{formatFull(toDate(l.returnedAt))}</td>
              <td>
                <OutcomeBadge outcome={l.outcome} />
              </td>
              <td className="num">{l.runs.toString()}</td>
              <td className="detail" title={l.detail}>
                {l.detail}
              </td>
            </tr>
          ))}
          {leases.length === 0 && (
            <tr className="empty">
              <td colSpan={7}>Never leased.</td>
            </tr>
          )}
        </tbody>
      </table>
    </div>
  );
}

function Evidence({ cases }: { cases: EvidenceCase[] }) {
  const fail = useFail();
  const [shown, setShown] = useState<{ id: string; url: string } | undefined>();
  const [error, setError] = useState("");
  const current = useRef<string | undefined>(undefined);

  // The blob URL holds the PNG in memory until revoked: revoke it when replaced or left.
  const show = (next: { id: string; url: string } | undefined) => {
    if (current.current) URL.revokeObjectURL(current.current);
    current.current = next?.url;
    setShown(next);
  };
  useEffect(
    () => () => {
      if (current.current) URL.revokeObjectURL(current.current);
    },
    [],
  );

  const open = async (id: string) => {
    setError("");
    try {
      const res = await sessions.getEvidence({ evidenceId: id });
      if (res.screenshotPng.length === 0) {
        show(undefined);
        setError("no screenshot was kept for this attempt");
        return;
      }
      const blob = new Blob([res.screenshotPng.slice()], { type: "image/png" });
      show({ id, url: URL.createObjectURL(blob) });
    } catch (err) {
      setError(fail(err));
    }
  };

  return (
    <div className="card">
      <h2>Failed attempts</h2>
      <table className="grid" id="evidence">
        <thead>
          <tr>
            <th>Time</th>
            <th>Class</th>
            <th>Error</th>
            <th>URL</th>
            <th className="num">Evaluation</th>
            <th />
          </tr>
        </thead>
        <tbody>
          {cases.map((c) => (
            <tr key={c.id} data-testid="evidence-row" data-evidence-id={c.id}>
              <td>{formatFull(toDate(c.capturedAt))}</td>
              <td>
                <span className="badge">{c.class}</span>
              </td>
              <td className="detail" title={c.error}>
                {c.error}
              </td>
              <td className="detail mono" title={c.title ? `${c.title}\n${c.url}` : c.url}>
                {c.url}
              </td>
              <td className="num">{c.evaluationId.toString()}</td>
              <td>
                <button
                  type="button"
                  className="show-screenshot small"
                  disabled={!c.hasScreenshot}
                  title={c.hasScreenshot ? "show the page as the bot saw it" : "no screenshot kept"}
                  onClick={() => void open(c.id)}
                >
                  screenshot
                </button>
              </td>
            </tr>
          ))}
          {cases.length === 0 && (
            <tr className="empty">
              <td colSpan={6}>No failed attempts reported.</td>
            </tr>
          )}
        </tbody>
      </table>
      {error && <p className="error">{error}</p>}
      {shown && (
        <figure className="screenshot">
          <figcaption>
            Screenshot of {shown.id}{" "}
            <button type="button" className="small" onClick={() => show(undefined)}>
              Close
            </button>
          </figcaption>
          <img id="evidence-screenshot" src={shown.url} alt={`screenshot of ${shown.id}`} />
        </figure>
      )}
    </div>
  );
}
