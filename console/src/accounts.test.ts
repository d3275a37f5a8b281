import { create, type MessageInitShape } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { describe, expect, it } from "vitest";
import {
  accountChanges,
  cooldownReason,
  filterAccounts,
  nextSort,
  sortAccounts,
  statusKey,
  statusText,
  watchRequest,
} from "./accounts";
import { AccountSchema, AccountStatus, LeaseSchema, type Account } from "./gen/aap/v1/sessions_pb";

const now = new Date(2026, 11, 3, 14, 0, 0);

function account(init: MessageInitShape<typeof AccountSchema> = {}): Account {
  return create(AccountSchema, {
    id: "acc",
    assistant: "chatgpt",
    plan: "Plus",
    label: "a@example.com",
    status: AccountStatus.ACTIVE,
    underlyingStatus: AccountStatus.ACTIVE,
    ...init,
  });
}

const in12min = timestampFromDate(new Date(2026, 11, 3, 14, 12, 0));

describe("statusText", () => {
  it("names an active or expired account's status alone", () => {
    expect(statusText(account(), now)).toBe("active");
    expect(statusText(account({ status: AccountStatus.EXPIRED }), now)).toBe("expired");
  });

  it("says until when an active account at its hourly budget is not lent", () => {
    const a = account({ promptsThisHour: 40n, hourlyBudget: 40, budgetFreesAt: in12min });
    expect(statusText(a, now)).toBe("active, at its hourly budget (40) until 14:12:00 (in 12 min)");
    expect(statusText(account({ promptsThisHour: 12n, hourlyBudget: 40 }), now)).toBe("active");
  });

  it("says until when a cooling account cools and how long that is", () => {
    const a = account({ status: AccountStatus.COOLING, cooldownUntil: in12min, cooldownReason: "429 too many" });
    expect(statusText(a, now)).toBe("cooling until 14:12:00 (in 12 min)");
    expect(cooldownReason(a)).toBe("429 too many");
  });

  it("says when a challenge cool-down is already over", () => {
    const a = account({
      status: AccountStatus.CHALLENGED,
      cooldownUntil: timestampFromDate(new Date(2026, 11, 3, 13, 0, 0)),
    });
    expect(statusText(a, now)).toBe("challenged until 13:00:00 (over)");
  });

  it("shows the status under a disable, which enabling brings back", () => {
    const a = account({
      status: AccountStatus.DISABLED,
      underlyingStatus: AccountStatus.COOLING,
      cooldownUntil: in12min,
      cooldownReason: "rate limited",
    });
    expect(statusText(a, now)).toBe("disabled (was cooling until 14:12:00 (in 12 min))");
    expect(cooldownReason(a)).toBe("rate limited");
    expect(statusText(account({ status: AccountStatus.DISABLED }), now)).toBe("disabled (was active)");
    expect(
      statusText(account({ status: AccountStatus.DISABLED, underlyingStatus: AccountStatus.UNSPECIFIED }), now),
    ).toBe("disabled");
  });

  it("hides a stale cool-down reason once the account is active", () => {
    expect(cooldownReason(account({ cooldownReason: "old" }))).toBe("");
  });

  it("gives data-status keys in lowercase", () => {
    expect(statusKey(AccountStatus.CHALLENGED)).toBe("challenged");
    expect(statusKey(AccountStatus.DISABLED)).toBe("disabled");
  });
});

describe("filters", () => {
  const list = [
    account({ id: "1", assistant: "chatgpt", plan: "Plus" }),
    account({ id: "2", assistant: "claude", plan: "Pro", status: AccountStatus.COOLING }),
    account({ id: "3", assistant: "chatgpt", plan: " plus ", status: AccountStatus.DISABLED }),
  ];
  const ids = (accounts: Account[]) => accounts.map((a) => a.id);

  it("keeps everything without filters", () => {
    expect(ids(filterAccounts(list, { assistant: "", plan: "", status: "" }))).toEqual(["1", "2", "3"]);
  });

  it("compares the plan trimmed and case-insensitively, as the server does", () => {
    expect(ids(filterAccounts(list, { assistant: "", plan: "PLUS ", status: "" }))).toEqual(["1", "3"]);
  });

  it("combines assistant and status", () => {
    expect(ids(filterAccounts(list, { assistant: "chatgpt", plan: "", status: "disabled" }))).toEqual(["3"]);
    expect(ids(filterAccounts(list, { assistant: "claude", plan: "", status: "active" }))).toEqual([]);
  });

  it("passes the same filters to WatchAccounts", () => {
    expect(watchRequest({ assistant: "claude", plan: " Pro ", status: "cooling" })).toEqual({
      assistant: "claude",
      plan: "Pro",
      statuses: [AccountStatus.COOLING],
    });
    expect(watchRequest({ assistant: "", plan: "", status: "" }).statuses).toEqual([]);
  });
});

describe("sorting", () => {
  const lease = (minute: number) =>
    create(LeaseSchema, { leasedAt: timestampFromDate(new Date(2026, 11, 3, 13, minute)) });
  const list = [
    account({ id: "a", label: "b", runs: 10n, status: AccountStatus.EXPIRED, lastLease: lease(5) }),
    account({ id: "b", label: "A", runs: 2n, status: AccountStatus.ACTIVE }),
    account({ id: "c", label: "c", runs: 10n, status: AccountStatus.COOLING, lastLease: lease(30) }),
  ];
  const ids = (accounts: Account[]) => accounts.map((a) => a.id);

  it("keeps the server's order without a sort", () => {
    expect(ids(sortAccounts(list, undefined))).toEqual(["a", "b", "c"]);
  });

  it("sorts labels case-insensitively, both ways", () => {
    expect(ids(sortAccounts(list, { key: "label", dir: "asc" }))).toEqual(["b", "a", "c"]);
    expect(ids(sortAccounts(list, { key: "label", dir: "desc" }))).toEqual(["c", "a", "b"]);
  });

  it("sorts counters numerically and keeps ties in the server's order", () => {
    expect(ids(sortAccounts(list, { key: "runs", dir: "asc" }))).toEqual(["b", "a", "c"]);
    expect(ids(sortAccounts(list, { key: "runs", dir: "desc" }))).toEqual(["a", "c", "b"]);
  });

  it("sorts statuses by severity and never-leased accounts first", () => {
    expect(ids(sortAccounts(list, { key: "status", dir: "asc" }))).toEqual(["b", "c", "a"]);
    expect(ids(sortAccounts(list, { key: "last_lease", dir: "asc" }))).toEqual(["b", "a", "c"]);
  });

  it("does not reorder the list it was given", () => {
    sortAccounts(list, { key: "label", dir: "desc" });
    expect(ids(list)).toEqual(["a", "b", "c"]);
  });

  it("toggles the direction on a second click and starts ascending on a new column", () => {
    expect(nextSort(undefined, "plan")).toEqual({ key: "plan", dir: "asc" });
    expect(nextSort({ key: "plan", dir: "asc" }, "plan")).toEqual({ key: "plan", dir: "desc" });
    expect(nextSort({ key: "plan", dir: "desc" }, "plan")).toEqual({ key: "plan", dir: "asc" });
    expect(nextSort({ key: "plan", dir: "desc" }, "runs")).toEqual({ key: "runs", dir: "asc" });
  });
});

describe("accountChanges", () => {
  const current = { proxy: "http://p:8080", userAgent: "", label: "x" };

  it("is undefined when nothing changed", () => {
    expect(accountChanges(current, { ...current, label: " x " })).toBeUndefined();
  });

  it("sends only the changed fields, an emptied one as an empty string", () => {
    expect(accountChanges(current, { proxy: "", userAgent: "", label: "y" })).toEqual({ proxy: "", label: "y" });
    expect(accountChanges(current, { ...current, userAgent: "UA/1" })).toEqual({ userAgent: "UA/1" });
  });
});
