import type { Account } from "../gen/aap/v1/sessions_pb";
import { cooldownReason, statusParts, statusText } from "../accounts";

/** The account's status as a coloured badge, with why it cools down beneath. */
export function StatusBadge({ account, now }: { account: Account; now: Date }) {
  const reason = cooldownReason(account);
  const { badge, detail } = statusParts(account, now);
  return (
    <div className="status-cell" title={statusText(account, now) + (reason ? `\n${reason}` : "")}>
      <span className={`badge status-${badge}`}>{badge}</span>
      {account.leased && <span className="badge leased">leased</span>}
      {detail && <div className="status-detail">{detail}</div>}
      {reason && <div className="reason">{reason}</div>}
    </div>
  );
}

/** A lease outcome (`ok`, `held`, `rate-limited` …) as a small badge. */
export function OutcomeBadge({ outcome }: { outcome: string }) {
  if (!outcome) return null;
  return <span className={`badge outcome outcome-${outcome}`}>{outcome}</span>;
}
