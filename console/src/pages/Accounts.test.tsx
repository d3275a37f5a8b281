import { create } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import { act, cleanup, fireEvent, render, waitFor } from "@testing-library/react";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { FailureContext } from "../api";
import { AccountSchema, AccountStatus, type WatchAccountsRequest } from "../gen/aap/v1/sessions_pb";
import { Accounts } from "./Accounts";

/** The stream the page reads: each test pushes lists into it, or ends it with an error. */
const stream = vi.hoisted(() => ({
  requests: [] as unknown[],
  push: (_accounts: unknown[]) => {},
  fail: (_err: unknown) => {},
}));

vi.mock("../api", async (importOriginal) => {
  const actual = await importOriginal<typeof import("../api")>();
  return {
    ...actual,
    sessions: {
      watchAccounts(request: WatchAccountsRequest, options: { signal: AbortSignal }) {
        stream.requests.push(request);
        const queue: ({ accounts: unknown[] } | { error: unknown })[] = [];
        let wake = () => {};
        stream.push = (accounts) => {
          queue.push({ accounts });
          wake();
        };
        stream.fail = (error) => {
          queue.push({ error });
          wake();
        };
        return (async function* () {
          while (!options.signal.aborted) {
            const next = queue.shift();
            if (!next) {
              await new Promise<void>((r) => (wake = r));
              continue;
            }
            if ("error" in next) throw next.error;
            yield next;
          }
        })();
      },
    },
  };
});

const accounts = [
  create(AccountSchema, {
    id: "a1",
    assistant: "chatgpt",
    plan: "Plus",
    label: "one",
    status: AccountStatus.ACTIVE,
    runs: 5n,
  }),
  create(AccountSchema, {
    id: "a2",
    assistant: "claude",
    plan: "Pro",
    label: "two",
    status: AccountStatus.DISABLED,
    underlyingStatus: AccountStatus.EXPIRED,
    runs: 9n,
  }),
];

const rows = () =>
  [...document.querySelectorAll<HTMLTableRowElement>("#accounts tr[data-testid=account-row]")].map(
    (r) => `${r.dataset.accountId}:${r.dataset.label}:${r.dataset.status}`,
  );

beforeEach(() => {
  stream.requests = [];
});

afterEach(cleanup);

describe("Accounts", () => {
  it("shows the streamed list with the test hooks, live", async () => {
    render(<Accounts />);
    expect(document.querySelector("#live")?.getAttribute("data-state")).toBe("reconnecting");
    await act(async () => stream.push(accounts));
    await waitFor(() => expect(rows()).toEqual(["a1:one:active", "a2:two:disabled"]));
    expect(document.querySelector("#live")?.getAttribute("data-state")).toBe("live");
    expect(document.querySelector("#accounts")?.textContent).toContain("was expired");
  });

  it("sorts by a clicked header, then the other way", async () => {
    render(<Accounts />);
    await act(async () => stream.push(accounts));
    fireEvent.click(document.querySelector("th[data-sort=runs]")!);
    expect(rows().map((r) => r.split(":")[0])).toEqual(["a1", "a2"]);
    fireEvent.click(document.querySelector("th[data-sort=runs]")!);
    expect(rows().map((r) => r.split(":")[0])).toEqual(["a2", "a1"]);
    expect(document.querySelector("th[data-sort=runs]")?.getAttribute("aria-sort")).toBe("descending");
  });

  it("filters at once and asks the server for the filtered list", async () => {
    render(<Accounts />);
    await act(async () => stream.push(accounts));
    fireEvent.change(document.querySelector("#filter-status")!, { target: { value: "disabled" } });
    expect(rows()).toEqual(["a2:two:disabled"]);
    expect(document.querySelector("#accounts")?.getAttribute("aria-busy")).toBe("true");
    await waitFor(() => expect(stream.requests).toHaveLength(2));
    expect(stream.requests[1]).toMatchObject({ statuses: [AccountStatus.DISABLED] });
    await act(async () => stream.push([accounts[1]]));
    expect(document.querySelector("#accounts")?.getAttribute("aria-busy")).toBe("false");
  });

  it("signs out when the stream says the session has ended", async () => {
    const fail = vi.fn(() => "your session has ended: sign in again");
    render(
      <FailureContext.Provider value={{ fail }}>
        <Accounts />
      </FailureContext.Provider>,
    );
    await act(async () => stream.fail(new ConnectError("revoked", Code.Unauthenticated)));
    await waitFor(() => expect(fail).toHaveBeenCalledOnce());
    // A refusal is not tried again.
    expect(stream.requests).toHaveLength(1);
  });
});
