/**
 * The one way the extension talks to mlnb's server extension: `requestAPI<T>()` under
 * `{base_url}/mlnb/api/` (the contract is docs/jupyterlab.md, "The server API").
 */
import { URLExt } from '@jupyterlab/coreutils';
import { ServerConnection } from '@jupyterlab/services';

/** An error answer of the server: its status, type and message (the query language's caret
 * message for a bad filter). */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly type: string,
    message: string
  ) {
    super(message);
  }
}

const SETTINGS = ServerConnection.makeSettings();

/** The absolute URL of an API path (for links: artifacts, downloads). */
export function apiUrl(path: string): string {
  return URLExt.join(SETTINGS.baseUrl, 'mlnb', 'api', path);
}

/** A query string from defined values only. */
export function query(params: Record<string, string | number | undefined | null>): string {
  const parts: string[] = [];
  for (const [key, value] of Object.entries(params)) {
    if (value !== undefined && value !== null && value !== '') {
      parts.push(`${encodeURIComponent(key)}=${encodeURIComponent(String(value))}`);
    }
  }
  return parts.length ? `?${parts.join('&')}` : '';
}

/** Non-finite floats come as strings ("NaN", "Infinity", "-Infinity"). */
export function num(value: unknown): number | null {
  if (typeof value === 'number') {
    return value;
  }
  if (value === 'NaN') {
    return NaN;
  }
  if (value === 'Infinity') {
    return Infinity;
  }
  if (value === '-Infinity') {
    return -Infinity;
  }
  return null;
}

/** Call the API; the parsed JSON body, or an `ApiError` with the server's message. */
export async function requestAPI<T>(path: string, init: RequestInit = {}): Promise<T> {
  const url = apiUrl(path);
  let response: Response;
  try {
    response = await ServerConnection.makeRequest(url, init, SETTINGS);
  } catch (error) {
    throw new ApiError(0, 'NetworkError', `The Jupyter server cannot be reached: ${error}`);
  }
  const text = await response.text();
  let body: any = null;
  if (text) {
    try {
      body = JSON.parse(text);
    } catch {
      body = null;
    }
  }
  if (!response.ok) {
    const error = body && body.error;
    if (error && typeof error.message === 'string') {
      throw new ApiError(response.status, String(error.type || 'Error'), error.message);
    }
    if (response.status === 404 && path === 'version') {
      throw new ApiError(404, 'NotFound', "mlnb's server extension is not loaded.");
    }
    const message = (body && (body.message || body.reason)) || response.statusText;
    throw new ApiError(response.status, 'HTTPError', `${response.status}: ${message}`);
  }
  return body as T;
}
