import { useEffect, useState } from "react";
import { assistantName } from "../accounts";
import { logins, useFail } from "../api";
import { formatTime, toDate } from "../format";
import type { RemoteLogin } from "../gen/aap/v1/logins_pb";
import { loginEnded, loginStateKey } from "../logins";
import { routeHref } from "../router";

/** The operator's remote logins still running or recently ended, to go back to one. */
export function RecentLogins() {
  const fail = useFail();
  const [list, setList] = useState<RemoteLogin[] | undefined>();
  const [error, setError] = useState("");

  useEffect(() => {
    const abort = new AbortController();
    logins.listRemoteLogins({}, { signal: abort.signal }).then(
      (res) => setList(res.logins),
      (err: unknown) => {
        if (!abort.signal.aborted) setError(fail(err));
      },
    );
    return () => abort.abort();
  }, [fail]);

  if (error) return <p className="error">{error}</p>;
  if (!list?.length) return null;
  return (
    <div className="card">
      <h2>Your remote logins</h2>
      <table className="grid" id="remote-logins">
        <thead>
          <tr>
            <th>Started</th>
            <th>Assistant</th>
            <th>Plan</th>
            <th>Label</th>
            <th>State</th>
            <th>Detail</th>
          </tr>
        </thead>
        <tbody>
          {list.map((l) => (
            <tr key={l.id} data-testid="remote-login-row" data-login-id={l.id}>
              <td>{formatTime(toDate(l.startedAt))}</td>
              <td>{assistantName(l.assistant)}</td>
              <td>{l.plan}</td>
              <td>{l.label}</td>
              <td>
                <a href={routeHref({ page: "login", id: l.id })}>
                  <span className={`badge login-${loginStateKey(l.state)}`}>{loginStateKey(l.state)}</span>
                </a>
                {!loginEnded(l.state) && <span className="muted"> running</span>}
              </td>
              <td className="detail" title={l.detail}>
                {l.detail}
              </td>
            </tr>
          ))}
        </tbody>
      </table>
    </div>
  );
}
