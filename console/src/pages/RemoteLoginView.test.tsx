import { create } from "@bufbuild/protobuf";
import { act, cleanup, fireEvent, render, waitFor } from "@testing-library/react";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { KeyAction, RemoteLoginSchema, RemoteLoginState } from "../gen/aap/v1/logins_pb";
import { RemoteLoginView } from "./RemoteLoginView";

/** The WatchRemoteLogin stream: each test pushes events into it. */
const api = vi.hoisted(() => {
  const events: unknown[] = [];
  let wake = () => {};
  return {
    push(event: unknown) {
      events.push(event);
      wake();
    },
    reset() {
      events.length = 0;
    },
    logins: {
      sendRemoteLoginInput: vi.fn(async () => ({})),
      cancelRemoteLogin: vi.fn(),
      watchRemoteLogin(_req: unknown, options: { signal: AbortSignal }) {
        return (async function* () {
          while (!options.signal.aborted) {
            const next = events.shift();
            if (next) yield { event: next };
            else await new Promise<void>((r) => (wake = r));
          }
        })();
      },
    },
  };
});

vi.mock("../api", async (importOriginal) => ({
  ...(await importOriginal<typeof import("../api")>()),
  logins: api.logins,
}));

const login = (state: RemoteLoginState, more: object = {}) => ({
  case: "login",
  value: create(RemoteLoginSchema, { id: "rl1", assistant: "chatgpt", width: 1280, height: 800, state, ...more }),
});

const $ = (selector: string) => document.querySelector<HTMLElement>(selector);

beforeEach(() => {
  api.reset();
  api.logins.sendRemoteLoginInput.mockClear();
});

afterEach(cleanup);

describe("RemoteLoginView", () => {
  it("follows the login's state into data-state", async () => {
    render(<RemoteLoginView id="rl1" />);
    await act(async () => api.push(login(RemoteLoginState.WAITING)));
    await waitFor(() => expect($("#remote-login")?.dataset.state).toBe("waiting"));
    expect($("#screen")?.tabIndex).toBe(0);
    await act(async () => api.push(login(RemoteLoginState.FAILED, { detail: "the browser crashed" })));
    await waitFor(() => expect($("#remote-login")?.dataset.state).toBe("failed"));
    expect($("#login-detail")?.textContent).toContain("the browser crashed");
    expect(($("#cancel-login") as HTMLButtonElement).disabled).toBe(true);
  });

  it("links to the account once stored", async () => {
    render(<RemoteLoginView id="rl1" />);
    await act(async () => api.push(login(RemoteLoginState.STORED, { accountId: "acc_9" })));
    await waitFor(() => expect($("#open-account")?.getAttribute("href")).toBe("#/accounts/acc_9"));
  });

  it("forwards typed text and special keys in order, and keeps them from the console", async () => {
    render(<RemoteLoginView id="rl1" />);
    await act(async () => api.push(login(RemoteLoginState.WAITING)));
    const screen = $("#screen")!;
    const typed = fireEvent.keyDown(screen, { key: "x", code: "KeyX" });
    fireEvent.keyDown(screen, { key: "Enter", code: "Enter", ctrlKey: true });
    expect(typed).toBe(false); // default prevented
    expect(fireEvent.keyDown(screen, { key: "Shift", code: "ShiftLeft" })).toBe(true);
    await waitFor(() => expect(api.logins.sendRemoteLoginInput).toHaveBeenCalledTimes(2));
    expect(api.logins.sendRemoteLoginInput.mock.calls.map((c) => (c as unknown[])[0])).toEqual([
      { loginId: "rl1", input: { case: "text", value: { text: "x" } } },
      {
        loginId: "rl1",
        input: { case: "key", value: { action: KeyAction.PRESS, key: "Enter", code: "Enter", modifiers: 2 } },
      },
    ]);
  });

  it("sends nothing once the login has ended", async () => {
    render(<RemoteLoginView id="rl1" />);
    await act(async () => api.push(login(RemoteLoginState.CANCELLED)));
    await waitFor(() => expect($("#remote-login")?.dataset.state).toBe("cancelled"));
    fireEvent.keyDown($("#screen")!, { key: "x", code: "KeyX" });
    expect(api.logins.sendRemoteLoginInput).not.toHaveBeenCalled();
  });
});
