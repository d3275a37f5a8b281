import { useSyncExternalStore } from "react";

/**
 * The console's pages, addressed by the URL's hash so that the server serves one index.html
 * whatever the page, and reloading or sharing a link keeps the page.
 */
export type Route =
  { page: "accounts" } | { page: "account"; id: string } | { page: "add" } | { page: "login"; id: string };

export function parseRoute(hash: string): Route {
  const parts = hash.replace(/^#\/?/, "").split("/").filter(Boolean).map(decodeURIComponent);
  if (parts[0] === "accounts" && parts[1]) return { page: "account", id: parts[1] };
  if (parts[0] === "add") return { page: "add" };
  if (parts[0] === "logins" && parts[1]) return { page: "login", id: parts[1] };
  return { page: "accounts" };
}

export function routeHref(route: Route): string {
  switch (route.page) {
    case "accounts":
      return "#/accounts";
    case "account":
      return `#/accounts/${encodeURIComponent(route.id)}`;
    case "add":
      return "#/add";
    case "login":
      return `#/logins/${encodeURIComponent(route.id)}`;
  }
}

export function navigate(route: Route): void {
  window.location.hash = routeHref(route);
}

function subscribe(onChange: () => void): () => void {
  window.addEventListener("hashchange", onChange);
  return () => window.removeEventListener("hashchange", onChange);
}

export function useRoute(): Route {
  const hash = useSyncExternalStore(subscribe, () => window.location.hash);
  return parseRoute(hash);
}
