import { RemoteLoginState } from "./gen/aap/v1/logins_pb";

export type LoginStateKey =
  "starting" | "waiting" | "capturing" | "stored" | "abandoned" | "cancelled" | "failed" | "unknown";

/** The lowercase state name, as `data-state` carries it. */
export function loginStateKey(state: RemoteLoginState): LoginStateKey {
  switch (state) {
    case RemoteLoginState.STARTING:
      return "starting";
    case RemoteLoginState.WAITING:
      return "waiting";
    case RemoteLoginState.CAPTURING:
      return "capturing";
    case RemoteLoginState.STORED:
      return "stored";
    case RemoteLoginState.ABANDONED:
      return "abandoned";
    case RemoteLoginState.CANCELLED:
      return "cancelled";
    case RemoteLoginState.FAILED:
      return "failed";
    case RemoteLoginState.UNSPECIFIED:
      return "unknown";
  }
}

/** Whether the login is over: the browser is closed and no more frames come. */
export function loginEnded(state: RemoteLoginState): boolean {
  return (
    state === RemoteLoginState.STORED ||
    state === RemoteLoginState.ABANDONED ||
    state === RemoteLoginState.CANCELLED ||
    state === RemoteLoginState.FAILED
  );
}

/** A sentence for the operator about the state. */
export function loginStateText(state: RemoteLoginState): string {
  switch (state) {
    case RemoteLoginState.STARTING:
      return "Starting the browser…";
    case RemoteLoginState.WAITING:
      return "Waiting for you to log in";
    case RemoteLoginState.CAPTURING:
      return "Logged in: storing the session…";
    case RemoteLoginState.STORED:
      return "Stored";
    case RemoteLoginState.ABANDONED:
      return "Abandoned: no input for too long, nothing stored";
    case RemoteLoginState.CANCELLED:
      return "Cancelled, nothing stored";
    case RemoteLoginState.FAILED:
      return "Failed, nothing stored";
    case RemoteLoginState.UNSPECIFIED:
      return "Unknown";
  }
}
