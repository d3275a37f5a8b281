import { Code, ConnectError } from "@connectrpc/connect";
import { describe, expect, it, vi } from "vitest";
import { describeError, retryable } from "./errors";
import { formatCountdown, formatSpan, formatTime, proxyHost } from "./format";
import { RemoteLoginState } from "./gen/aap/v1/logins_pb";
import { loginEnded, loginStateKey } from "./logins";
import { parseRoute, routeHref } from "./router";
import { backoffMs, follow, type StreamState } from "./stream";

describe("describeError", () => {
  it("signs out on UNAUTHENTICATED", () => {
    expect(describeError(new ConnectError("token revoked", Code.Unauthenticated)).signedOut).toBe(true);
  });

  it("shows the server's own message otherwise", () => {
    expect(describeError(new ConnectError("operators only", Code.PermissionDenied))).toEqual({
      signedOut: false,
      message: "operators only",
    });
    expect(describeError(new ConnectError("proxy: credentials are refused", Code.InvalidArgument)).message).toBe(
      "proxy: credentials are refused",
    );
  });
});

describe("retryable", () => {
  it("tries a stream again after a network hiccup but not after a refusal", () => {
    expect(retryable(new ConnectError("reset", Code.Unavailable))).toBe(true);
    expect(retryable(new TypeError("failed to fetch"))).toBe(true);
    expect(retryable(new ConnectError("no such login", Code.NotFound))).toBe(false);
    expect(retryable(new ConnectError("operators only", Code.PermissionDenied))).toBe(false);
    expect(retryable(new ConnectError("revoked", Code.Unauthenticated))).toBe(false);
  });
});

describe("format", () => {
  const now = new Date(2026, 11, 3, 14, 0, 0);
  it("shows today's times with seconds and other days with the date", () => {
    expect(formatTime(new Date(2026, 11, 3, 9, 5, 7), now)).toBe("09:05:07");
    expect(formatTime(new Date(2026, 10, 30, 23, 59, 0), now)).toBe("2026-11-30 23:59");
    expect(formatTime(undefined, now)).toBe("–");
  });

  it("formats spans and countdowns", () => {
    expect(formatSpan(12_000)).toBe("12 s");
    expect(formatSpan(125 * 60_000)).toBe("2 h 5 min");
    expect(formatSpan(-5)).toBe("0 s");
    expect(formatCountdown(9 * 60_000 + 41_000)).toBe("9:41");
    expect(formatCountdown(-1)).toBe("0:00");
  });

  it("shows a proxy's host as given", () => {
    expect(proxyHost("socks5://10.0.0.1:1080")).toBe("10.0.0.1:1080");
    expect(proxyHost("")).toBe("");
  });
});

describe("remote login states", () => {
  it("names states as data-state carries them and knows which end the login", () => {
    expect(loginStateKey(RemoteLoginState.WAITING)).toBe("waiting");
    expect(loginStateKey(RemoteLoginState.CANCELLED)).toBe("cancelled");
    expect(loginEnded(RemoteLoginState.CAPTURING)).toBe(false);
    expect(loginEnded(RemoteLoginState.STORED)).toBe(true);
    expect(loginEnded(RemoteLoginState.FAILED)).toBe(true);
  });
});

describe("routes", () => {
  it("round-trips every page through the hash", () => {
    for (const route of [
      { page: "accounts" },
      { page: "account", id: "acc 1/x" },
      { page: "add" },
      { page: "login", id: "rl_1" },
    ] as const) {
      expect(parseRoute(routeHref(route))).toEqual(route);
    }
    expect(parseRoute("")).toEqual({ page: "accounts" });
    expect(parseRoute("#/nonsense")).toEqual({ page: "accounts" });
  });
});

describe("follow", () => {
  it("backs off 1 s, 2 s, 4 s … up to 30 s", () => {
    expect([0, 1, 2, 5, 10].map(backoffMs)).toEqual([1000, 2000, 4000, 30_000, 30_000]);
  });

  it("reconnects after an error and stops when the stream is over for good", async () => {
    const states: StreamState[] = [];
    const errors: unknown[] = [];
    let calls = 0;
    vi.useFakeTimers();
    const done = follow(
      new AbortController().signal,
      async (received) => {
        calls += 1;
        if (calls === 1) throw new Error("reset");
        received();
        return true;
      },
      (s) => states.push(s),
      (err) => errors.push(err) > 0,
    );
    await vi.advanceTimersByTimeAsync(999);
    expect(calls).toBe(1);
    await vi.advanceTimersByTimeAsync(1);
    await done;
    vi.useRealTimers();
    expect(calls).toBe(2);
    expect(errors).toHaveLength(1);
    expect(states).toEqual(["reconnecting", "live"]);
  });

  it("stops when told to after an error", async () => {
    let calls = 0;
    await follow(
      new AbortController().signal,
      async () => {
        calls += 1;
        throw new Error("signed out");
      },
      () => {},
      () => false,
    );
    expect(calls).toBe(1);
  });
});
