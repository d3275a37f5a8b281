import { Code, ConnectError } from "@connectrpc/connect";

export interface Problem {
  /** The session cookie is gone or revoked: back to the sign-in page. */
  signedOut: boolean;
  /** What to show the operator. */
  message: string;
}

/**
 * What a failed call means for the console. The server's own message is shown as it is (an
 * INVALID_ARGUMENT names the field, a PERMISSION_DENIED says what is not allowed); a call that
 * never reached the server says so.
 */
export function describeError(err: unknown): Problem {
  const e = ConnectError.from(err);
  if (e.code === Code.Unauthenticated) {
    return { signedOut: true, message: "your session has ended: sign in again" };
  }
  if (e.code === Code.Canceled || e.code === Code.Unavailable) {
    return { signedOut: false, message: e.rawMessage || "cannot reach the platform" };
  }
  return { signedOut: false, message: e.rawMessage || Code[e.code].toLowerCase() };
}

/**
 * Whether trying a stream again may help: the network or the server had a moment. A refusal
 * (NOT_FOUND, PERMISSION_DENIED, INVALID_ARGUMENT, UNAUTHENTICATED …) stays a refusal.
 */
export function retryable(err: unknown): boolean {
  switch (ConnectError.from(err).code) {
    case Code.Unavailable:
    case Code.Unknown:
    case Code.Internal:
    case Code.Canceled:
    case Code.DeadlineExceeded:
    case Code.ResourceExhausted:
    case Code.Aborted:
      return true;
    default:
      return false;
  }
}
