import { createClient, type Client } from "@connectrpc/connect";
import { createGrpcWebTransport } from "@connectrpc/connect-web";
import { createContext, useContext } from "react";
import { describeError } from "./errors";
import { RemoteLoginService } from "./gen/aap/v1/logins_pb";
import { SessionService } from "./gen/aap/v1/sessions_pb";

/**
 * gRPC-web on the console's own origin (tonic-web). No authorization header: the session cookie
 * set at sign-in goes with every call by itself.
 */
const transport = createGrpcWebTransport({ baseUrl: window.location.origin });

export const sessions: Client<typeof SessionService> = createClient(SessionService, transport);
export const logins: Client<typeof RemoteLoginService> = createClient(RemoteLoginService, transport);

/** What a page does with a failed call. */
export interface Failure {
  /** The message to show; signs the console out first when the session has ended. */
  fail: (err: unknown) => string;
}

export const FailureContext = createContext<Failure>({
  fail: (err) => describeError(err).message,
});

export function useFail(): (err: unknown) => string {
  return useContext(FailureContext).fail;
}
