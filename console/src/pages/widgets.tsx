import type { Account } from "../gen/aap/v1/sessions_pb";
import { cooldownReason, statusKey, statusText } from "../accounts";

/** The account's status as a coloured badge, with why it cools down beneath. */
export function StatusBadge({ account, now }: { account: Account; now: Date }) {
  const reason = cooldownReason(account);
  return (
    <div className="status-cell">
      <span className={`badge status-${statusKey(account.status)}`}>{statusText(account, now)}</span>
      {account.leased && <span className="badge leased">leased</span>}
      {reason && (
        <div className="reason" title={reason}>
          {reason}
        </div>
      )}
    </div>
  );
}

/** A lease outcome (`ok`, `held`, `rate-limited` …) as a small badge. */
export function OutcomeBadge({ outcome }: { outcome: string }) {
  if (!outcome) return null;
  return <span className={`badge outcome outcome-${outcome}`}>{outcome}</span>;
}
