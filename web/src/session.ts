// Who is signed in: the token from `#token=…` or the sign-in box, kept in session storage.

const KEY = "taskservice.token";

export interface Identity {
  userId: string;
  isAdmin: boolean;
}

/** Take a token from the address (as `make run` prints it), store it, and clean the address. */
export function adoptTokenFromLocation(): void {
  const match = /(?:^#|&)token=([^&]+)/.exec(window.location.hash);
  if (!match) return;
  setToken(decodeURIComponent(match[1]));
  history.replaceState(null, "", window.location.pathname + window.location.search);
}

export function token(): string | null {
  return sessionStorage.getItem(KEY);
}

export function setToken(value: string): void {
  sessionStorage.setItem(KEY, value.trim().replace(/^Bearer\s+/i, ""));
}

export function clearToken(): void {
  sessionStorage.removeItem(KEY);
}

/** The identity a JWT names (read for display and view pruning only: the server verifies it). */
export function identity(): Identity | null {
  const jwt = token();
  if (!jwt) return null;
  try {
    const payload = jwt.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
    const claims = JSON.parse(atob(payload)) as { sub?: string; roles?: unknown };
    const roles = Array.isArray(claims.roles) ? claims.roles : [];
    return { userId: String(claims.sub ?? ""), isAdmin: roles.includes("admin") };
  } catch {
    return null;
  }
}
