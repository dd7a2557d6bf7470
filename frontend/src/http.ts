// fetch() for the console's own scripts: same-origin with the session cookie, the CSRF token on
// every state-changing call, and a sign-in (then back here) when the session has ended.

export class HttpError extends Error {
  constructor(public status: number, public body: { message?: string; field?: string; code?: string }) {
    super(body.message || `HTTP ${status}`);
  }
}

export function csrfToken(): string {
  return document.querySelector<HTMLMetaElement>('meta[name="csrf-token"]')?.content ?? "";
}

export function signInAgain(): void {
  const next = location.pathname + location.search + location.hash;
  location.assign(`/console/login?expired=1&next=${encodeURIComponent(next)}`);
}

export async function request(url: string, init: RequestInit = {}): Promise<Response> {
  const headers = new Headers(init.headers);
  headers.set("X-Requested-With", "rts-console");
  const method = (init.method || "GET").toUpperCase();
  if (method !== "GET" && method !== "HEAD") headers.set("X-CSRF-Token", csrfToken());
  const response = await fetch(url, { ...init, headers, credentials: "same-origin" });
  if (response.status === 401) {
    signInAgain();
    return new Promise<Response>(() => undefined); // the page is going to sign-in: nothing more to do here
  }
  if (!response.ok) {
    let body: { message?: string; field?: string } = {};
    try {
      body = await response.json();
    } catch {
      body = { message: `HTTP ${response.status}` };
    }
    throw new HttpError(response.status, body);
  }
  return response;
}

export async function json<T>(url: string, init: RequestInit = {}): Promise<T> {
  return (await request(url, init)).json() as Promise<T>;
}
