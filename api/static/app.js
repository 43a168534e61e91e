"use strict";

// The Colorize web page: sends files to the /v1 API, follows each job and shows its results.
// API paths are relative to the page, so the page also works behind a proxy under a prefix.

const KEY_STORAGE = "colorize.apiKey";
const TERMINAL = new Set(["succeeded", "partially_succeeded", "failed", "canceled"]);
const UPLOAD_CONCURRENCY = 3;
// Each job polls at least this often; with many jobs at once each polls less often, so that
// a page following dozens of jobs stays well inside the per-tenant request rate.
const POLL_MIN_MS = 1000;
const POLL_PER_ACTIVE_JOB_MS = 250;
const RETRY_UNAVAILABLE_MS = 3000;
const GALLERY_PAGE = 24;
// After a reload the page shows this many of the tenant's most recent jobs (GET /v1/jobs).
const RECENT_JOBS = 10;

const $ = (selector, root = document) => root.querySelector(selector);

const ui = {
  keyPanel: $("#key-panel"),
  keyReason: $("#key-reason"),
  keyForm: $("#key-form"),
  keyInput: $("#key-input"),
  keyForget: $("#key-forget"),
  dropZone: $("#drop-zone"),
  fileInput: $("#file-input"),
  modelField: $("#model-field"),
  modelSelect: $("#model-select"),
  modelDescription: $("#model-description"),
  temperature: $("#temperature"),
  temperatureValue: $("#temperature-value"),
  temperatureRange: $("#temperature-range"),
  temperatureReset: $("#temperature-reset"),
  notice: $("#notice"),
  jobs: $("#jobs"),
  jobTemplate: $("#job-template"),
  resultTemplate: $("#result-template"),
};

const page = {
  directUploadMaxBytes: Number(document.body.dataset.directUploadMaxBytes || 0),
  models: [],
  temperatureTouched: false,
  activeJobs: 0,
  uploadQueue: [],
  uploading: 0,
};

// --- errors -----------------------------------------------------------------------------------

class ApiError extends Error {
  constructor(status, code, message, details, retryAfterS) {
    super(message);
    this.status = status;
    this.code = code;
    this.details = details || {};
    this.retryAfterS = retryAfterS;
  }
}

class NetworkError extends Error {
  constructor(message) {
    super(message);
    this.code = "network_error";
    this.status = 0;
  }
}

function retryAfterSeconds(header, details) {
  const value = Number(header ?? details?.retry_after_s);
  return Number.isFinite(value) && value >= 0 ? value : null;
}

// The API's JSON error ({"error": {"code", "message", "details"}}), or a description of
// whatever else answered (a proxy's HTML page, storage's XML).
function errorFromResponse(status, text, retryAfterHeader) {
  let body = null;
  try {
    body = JSON.parse(text).error;
  } catch (_) {
    body = null;
  }
  if (body && typeof body.message === "string") {
    return new ApiError(status, body.code || "error", body.message, body.details,
      retryAfterSeconds(retryAfterHeader, body.details));
  }
  const xmlCode = /<Code>([^<]*)<\/Code>/.exec(text || "");
  const xmlMessage = /<Message>([^<]*)<\/Message>/.exec(text || "");
  if (xmlCode) {
    return new ApiError(status, xmlCode[1], `storage refused the request: ${xmlMessage ? xmlMessage[1] : xmlCode[1]}`);
  }
  return new ApiError(status, `http_${status}`, `the server answered HTTP ${status}`, {},
    retryAfterSeconds(retryAfterHeader, null));
}

function formatBytes(bytes) {
  const units = ["bytes", "KB", "MB", "GB", "TB"];
  let value = bytes;
  let unit = 0;
  while (value >= 1000 && unit < units.length - 1) {
    value /= 1000;
    unit += 1;
  }
  return unit === 0 ? `${value} bytes` : `${value.toFixed(value < 10 ? 1 : 0)} ${units[unit]}`;
}

function formatSeconds(seconds) {
  if (seconds < 90) return `${Math.ceil(seconds)} s`;
  if (seconds < 5400) return `${Math.round(seconds / 60)} min`;
  return `${Math.round(seconds / 3600)} h`;
}

// What the person should understand from an error, before the API's own message.
function explain(error) {
  if (error instanceof NetworkError) return "Could not reach the service.";
  const limit = Number(error.details.limit);
  switch (error.status) {
    case 400: return "The request was not accepted.";
    case 401: return "An API key is needed.";
    case 403: return "Storage refused the transfer (the link may have expired); try again.";
    case 404: return "Not found; it may have expired.";
    case 409: return "This conflicts with an earlier request.";
    case 413: return Number.isFinite(limit) && limit > 0 ? `Too large: the limit is ${formatBytes(limit)}.` : "Too large.";
    case 415: return "This file is neither a supported image nor an archive.";
    case 422: return error.code === "model_not_found" ? "That model is not installed on the server." : "Could not be processed.";
    case 429: {
      const wait = error.retryAfterS != null ? ` Try again in ${formatSeconds(error.retryAfterS)}.` : "";
      return (error.code === "quota_exceeded" ? "Quota reached." : "Too many requests.") + wait;
    }
    case 503: return "The service is unavailable right now.";
    default: return error.status >= 500 ? "The server failed." : "Something went wrong.";
  }
}

function renderError(container, error, context) {
  container.replaceChildren();
  const title = document.createElement("div");
  title.className = "error-title";
  title.textContent = context ? `${context}: ${explain(error)}` : explain(error);
  const message = document.createElement("div");
  message.className = "error-message";
  message.textContent = error.message;
  const code = document.createElement("code");
  code.className = "error-code";
  code.textContent = error.status ? `${error.code} · HTTP ${error.status}` : error.code || "error";
  container.append(title, message, code);
  container.hidden = false;
  if (error.status === 401) askForKey(error.message);
}

function showNotice(error, context) {
  renderError(ui.notice, error, context);
}

function hideNotice() {
  ui.notice.hidden = true;
  ui.notice.replaceChildren();
}

// --- API key ----------------------------------------------------------------------------------

function apiKey() {
  try {
    return localStorage.getItem(KEY_STORAGE) || "";
  } catch (_) {
    return "";  // storage disabled: the page still works where no key is needed
  }
}

function authHeaders() {
  const key = apiKey();
  return key ? { Authorization: `Bearer ${key}` } : {};
}

function askForKey(reason) {
  const hint = reason.includes("colorize keys") ? "" : ". An operator creates keys with 'colorize keys create --tenant NAME'";
  ui.keyReason.textContent = `${reason[0].toUpperCase()}${reason.slice(1)}${hint}.`;
  ui.keyPanel.classList.add("needed");
  ui.keyPanel.hidden = false;
  if (document.activeElement === document.body || !document.activeElement) ui.keyInput.focus();
}

function showStoredKey() {
  if (!apiKey()) return;
  ui.keyReason.textContent = "An API key is saved in this browser.";
  ui.keyPanel.hidden = false;
}

ui.keyForm.addEventListener("submit", (event) => {
  event.preventDefault();
  const key = ui.keyInput.value.trim();
  if (!key) return;
  try {
    localStorage.setItem(KEY_STORAGE, key);
  } catch (_) {
    showNotice(new ApiError(0, "storage_unavailable", "this browser does not allow local storage"), "Cannot keep the key");
    return;
  }
  ui.keyInput.value = "";
  ui.keyPanel.classList.remove("needed");
  ui.keyReason.textContent = "Key saved in this browser.";
  hideNotice();
  loadModels();
  loadRecentJobs();
});

ui.keyForget.addEventListener("click", () => {
  try {
    localStorage.removeItem(KEY_STORAGE);
  } catch (_) { /* nothing stored */ }
  ui.keyReason.textContent = "Key forgotten.";
});

// --- HTTP -------------------------------------------------------------------------------------

// An absolute or relative URL from the API as a path on this page's own origin, where the
// API is (a configured public URL may name another host for the same service).
function apiPath(url) {
  const resolved = new URL(url, document.baseURI);
  return resolved.pathname + resolved.search;
}

async function apiJson(path, { method = "GET", json } = {}) {
  const init = { method, headers: authHeaders(), cache: "no-store" };
  if (json !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(json);
  }
  let response;
  try {
    response = await fetch(path, init);
  } catch (_) {
    throw new NetworkError(`no answer from the service (${method} ${path})`);
  }
  const text = await response.text();
  if (!response.ok) throw errorFromResponse(response.status, text, response.headers.get("Retry-After"));
  return text ? JSON.parse(text) : null;
}

// XMLHttpRequest, for the upload progress events that fetch does not give.
function xhrSend(method, url, { body = null, headers = {}, onUploadProgress = null } = {}) {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open(method, url);
    for (const [name, value] of Object.entries(headers)) xhr.setRequestHeader(name, value);
    if (onUploadProgress) {
      xhr.upload.addEventListener("progress", (event) => {
        if (event.lengthComputable) onUploadProgress(event.loaded);
      });
    }
    xhr.addEventListener("load", () => resolve(xhr));
    xhr.addEventListener("error", () => reject(new NetworkError(
      `the upload to ${new URL(url, document.baseURI).host} was cut off or refused by the browser`)));
    xhr.addEventListener("abort", () => reject(new NetworkError("the upload was aborted")));
    xhr.send(body);
  });
}

function xhrResult(xhr) {
  if (xhr.status >= 200 && xhr.status < 300) return xhr.responseText ? JSON.parse(xhr.responseText) : null;
  throw errorFromResponse(xhr.status, xhr.responseText, xhr.getResponseHeader("Retry-After"));
}

// Results redirect to a presigned storage URL; fetch follows it (dropping the API key at the
// other origin) and the bytes become a blob: URL for the <img> and the download link.
async function fetchBlobUrl(url) {
  let response;
  try {
    response = await fetch(apiPath(url), { headers: authHeaders(), cache: "no-store" });
  } catch (_) {
    throw new NetworkError("could not download the result (no answer, or storage refused this page's origin)");
  }
  if (!response.ok) throw errorFromResponse(response.status, await response.text(), response.headers.get("Retry-After"));
  return URL.createObjectURL(await response.blob());
}

function downloadBlobUrl(blobUrl, filename) {
  const link = document.createElement("a");
  link.href = blobUrl;
  link.download = filename;
  document.body.append(link);
  link.click();
  link.remove();
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

// --- models and options -----------------------------------------------------------------------

function modelTemperature(name) {
  const model = page.models.find((m) => m.name === name);
  return model && typeof model.temperature === "number" ? model.temperature : null;
}

function setTemperature(value) {
  ui.temperature.value = String(value);
  ui.temperatureValue.textContent = Number(ui.temperature.value).toFixed(2);
}

function showModelDefaults() {
  const name = ui.modelSelect.value;
  const model = page.models.find((m) => m.name === name);
  ui.modelDescription.textContent = model && model.description ? model.description : "";
  const temperature = modelTemperature(name);
  if (temperature != null) {
    ui.temperatureReset.textContent = temperature.toFixed(2);
    if (!page.temperatureTouched) setTemperature(temperature);
  }
}

async function loadModels() {
  let data;
  try {
    data = await apiJson("v1/models");
  } catch (error) {
    if (error.status === 401) askForKey(error.message);  // the key panel says it all
    else showNotice(error, "Could not load the models");
    return;
  }
  page.models = data.models || [];
  const range = data.temperature_range;
  if (range) {
    ui.temperature.min = String(range.min);
    ui.temperature.max = String(range.max);
    ui.temperatureRange.textContent = `${range.min} – ${range.max}`;
  }
  ui.modelSelect.replaceChildren(...page.models.map((model) => {
    const option = document.createElement("option");
    option.value = model.name;
    option.textContent = model.default ? `${model.name} (default)` : model.name;
    option.selected = model.name === data.default;
    return option;
  }));
  ui.modelField.hidden = page.models.length < 2;
  showModelDefaults();
  if (!page.models.length) {
    showNotice(new ApiError(0, "no_model", "the server has no model installed; an operator installs one with 'colorize models install'"),
      "Nothing can be colorized yet");
  } else {
    hideNotice();
  }
}

ui.modelSelect.addEventListener("change", showModelDefaults);
ui.temperature.addEventListener("input", () => {
  page.temperatureTouched = true;
  setTemperature(ui.temperature.value);
});
ui.temperatureReset.addEventListener("click", () => {
  page.temperatureTouched = false;
  showModelDefaults();
});

// The options of a new job: only what the person chose, so the server's defaults apply otherwise.
function jobOptions() {
  const options = {};
  if (!ui.modelField.hidden && ui.modelSelect.value) options.model = ui.modelSelect.value;
  if (page.temperatureTouched) options.temperature = Number(ui.temperature.value);
  return options;
}

// --- a job on the page ------------------------------------------------------------------------

class JobView {
  constructor(file) {
    this.file = file;
    this.id = null;
    this.doc = null;
    this.itemsShown = GALLERY_PAGE;
    this.firstUnsettled = 0;
    this.rendered = new Set();
    this.failures = 0;
    this.originalUrl = null;  // the upload itself, shown as "before" for a single image
    this.canceled = false;

    const node = ui.jobTemplate.content.firstElementChild.cloneNode(true);
    this.node = node;
    this.status = $(".status", node);
    this.progress = $(".job-progress", node);
    this.phase = $(".job-phase", node);
    this.error = $(".job-error", node);
    this.zipLink = $(".zip-link", node);
    this.cancelButton = $(".cancel-button", node);
    this.retryButton = $(".retry-button", node);
    this.gallery = $(".gallery", node);
    this.moreButton = $(".more-button", node);
    this.failureBox = $(".failures", node);
    this.failureList = $(".failure-list", node);
    $(".job-name", node).textContent = file.name;
    $(".job-size", node).textContent = file.size == null ? "" : formatBytes(file.size);
    this.progress.setAttribute("aria-label", `Progress of ${file.name}`);
    this.setStatus("waiting", "Waiting to upload");

    this.cancelButton.addEventListener("click", () => this.cancel());
    this.retryButton.addEventListener("click", () => {
      this.retryButton.hidden = true;
      this.error.hidden = true;
      enqueueUpload(this);
    });
    this.moreButton.addEventListener("click", () => {
      this.itemsShown += GALLERY_PAGE;
      this.moreButton.hidden = true;
      this.loadItems().catch((error) => renderError(this.error, error, "Could not list the results"));
    });
    this.zipLink.addEventListener("click", (event) => {
      // A plain link streams the zip to disk; with a key, the header needs fetch (and memory).
      if (!apiKey()) return;
      event.preventDefault();
      fetchBlobUrl(this.zipLink.href)
        .then((url) => downloadBlobUrl(url, `${this.id}.zip`))
        .catch((error) => renderError(this.error, error, "Could not download the zip"));
    });
    ui.jobs.prepend(node);
  }

  setStatus(status, phase) {
    this.status.dataset.status = status;
    this.status.textContent = status.replace("_", " ");
    if (phase !== undefined) this.phase.textContent = phase;
  }

  uploadProgress(loaded) {
    const total = this.file.size || 1;
    this.progress.value = Math.min(1, loaded / total);
    this.phase.textContent = `Uploading: ${Math.floor((100 * loaded) / total)} % of ${formatBytes(this.file.size)}`;
  }

  failed(error, context) {
    this.setStatus("error", "");
    if (this.id === null) this.progress.value = 0;
    renderError(this.error, error, context);
    const retriable = error instanceof NetworkError || [401, 403, 429, 503].includes(error.status) || error.status >= 500;
    this.retryButton.hidden = !retriable || this.id !== null;
  }

  // A job submitted before this page was loaded: its document stands in for the file.
  static restored(doc) {
    const name = (doc.source && doc.source.filename) || doc.id;
    const view = new JobView({ name, size: null });
    ui.jobs.append(view.node);  // below anything dropped meanwhile, in the listing's order
    view.created(doc);
    return view;
  }

  created(doc) {
    this.id = doc.id;
    this.node.dataset.jobId = doc.id;
    if (doc.source && doc.source.kind === "image" && this.file instanceof Blob) {
      this.originalUrl = URL.createObjectURL(this.file);
    }
    this.show(doc);
  }

  show(doc) {
    this.doc = doc;
    const counts = doc.counts;
    this.progress.value = doc.progress;
    let phase;
    if (doc.status === "queued") phase = "Queued";
    else if (doc.status === "running" && !doc.expanded && counts.total === 0) phase = "Reading the archive…";
    else if (!TERMINAL.has(doc.status)) phase = `Colorizing: ${counts.done} of ${counts.total}${doc.expanded ? "" : "+"} done`;
    else if (doc.status === "canceled") phase = `Canceled: ${counts.done} colorized`;
    else phase = `${counts.done} colorized`;
    if (counts.failed) phase += `, ${counts.failed} failed`;
    this.setStatus(doc.status, phase);
    this.cancelButton.hidden = TERMINAL.has(doc.status);
    if (doc.error) {
      renderError(this.error, new ApiError(0, doc.error.code, doc.error.message, doc.error.details),
        "The job stopped early");
    }
    const finished = TERMINAL.has(doc.status);
    this.zipLink.hidden = !(finished && counts.done > 0 && counts.total > 1);
    this.zipLink.href = apiPath(doc.links.results_zip);
    this.zipLink.setAttribute("download", `${doc.id}.zip`);
  }

  async follow() {
    page.activeJobs += 1;
    try {
      let settled = -1;
      for (;;) {
        let doc;
        try {
          doc = await apiJson(`v1/jobs/${encodeURIComponent(this.id)}`);
        } catch (error) {
          await this.waitOrThrow(error);
          continue;
        }
        this.show(doc);
        const nowSettled = doc.counts.done + doc.counts.failed;
        const finished = TERMINAL.has(doc.status);
        if (nowSettled !== settled || finished) {
          settled = nowSettled;
          await this.loadItems();
        }
        if (finished) return;
        await sleep(Math.max(POLL_MIN_MS, page.activeJobs * POLL_PER_ACTIVE_JOB_MS));
      }
    } catch (error) {
      this.failed(error, "Could not follow the job");
    } finally {
      page.activeJobs -= 1;
    }
  }

  // Waits out a passing failure while polling (network, 429 with Retry-After, 503); throws others.
  async waitOrThrow(error) {
    let waitMs;
    if (error instanceof NetworkError || error.status === 503) waitMs = RETRY_UNAVAILABLE_MS;
    else if (error.status === 429) waitMs = 1000 * (error.retryAfterS ?? 1);
    else throw error;
    this.phase.textContent = `${explain(error)} Checking again in ${formatSeconds(waitMs / 1000)}…`;
    await sleep(waitMs);
  }

  // Renders the items settled since the last look, up to the number shown.
  async loadItems() {
    while (this.firstUnsettled < this.itemsShown) {
      const limit = Math.min(1000, this.itemsShown - this.firstUnsettled);
      const listing = await apiJson(`v1/jobs/${encodeURIComponent(this.id)}/items?offset=${this.firstUnsettled}&limit=${limit}`);
      let contiguous = true;
      for (const item of listing.items) {
        const settled = item.status === "done" || item.status === "failed";
        if (settled && !this.rendered.has(item.index)) {
          this.rendered.add(item.index);
          if (item.status === "done") this.addResult(item);
          else this.addFailure(item);
        }
        if (contiguous && settled) this.firstUnsettled = item.index + 1;
        else contiguous = false;
      }
      if (!contiguous || listing.items.length < limit) break;
    }
    const total = this.doc ? this.doc.counts.total : 0;
    this.moreButton.hidden = !(this.firstUnsettled >= this.itemsShown && total > this.itemsShown);
    this.moreButton.textContent = `Show more (${total - this.itemsShown} not shown)`;
  }

  addResult(item) {
    const node = ui.resultTemplate.content.firstElementChild.cloneNode(true);
    const name = item.output_path.split("/").pop();
    const compare = $(".compare", node);
    const after = $(".after", node);
    const before = $(".before", node);
    const slider = $(".compare-slider", node);
    const download = $(".result-download", node);
    $(".result-name", node).textContent = item.output_path;
    after.alt = `${item.output_path}, colorized`;
    slider.setAttribute("aria-label", `Compare before and after: ${item.output_path}`);
    slider.addEventListener("input", () => {
      compare.style.setProperty("--position", `${slider.value}%`);
      slider.setAttribute("aria-valuetext", `${slider.value} % before, ${100 - slider.value} % after`);
    });
    compare.classList.add("loading");
    download.hidden = true;
    this.gallery.append(node);

    fetchBlobUrl(item.result_url).then((url) => {
      after.src = url;
      download.href = url;
      download.download = name;
      download.hidden = false;
      compare.classList.remove("loading");
      this.showBefore(before, $(".tag-before", node), url, item.output_path);
      if (this.takesHints()) {
        this.hintJobId = this.doc.id;
        new HintEditor(node, this.originalUrl, after, (hints) => this.recolorize(hints, download),
          (x, y) => this.likelyColours(x, y));
      }
    }).catch((error) => {
      const message = document.createElement("div");
      message.className = "error";
      node.append(message);
      renderError(message, error, "Could not load the result");
    });
  }

  // Hints need the original photo to click on, a single image, and a model that takes them:
  // the result's own, or the hint model built on it, which colours as it does until given hints.
  takesHints() {
    return Boolean(this.originalUrl && this.hintModel() && this.doc.source.kind === "image");
  }

  hintModel() {
    const model = page.models.find((m) => m.name === this.doc.model);
    if (!model) return null;
    return model.hints ? model.name : model.hint_model || null;
  }

  // A new job of the same file and options with ``hints``, waited for (Prefer: wait); the
  // blob: URL of its result, which the download link then offers too.
  async recolorize(hints, download) {
    const form = new FormData();
    form.append("file", this.file, this.file.name);
    form.append("model", this.hintModel());
    if (this.doc.temperature != null) form.append("temperature", String(this.doc.temperature));
    form.append("hints", JSON.stringify(hints));
    const headers = { ...authHeaders(), Prefer: `wait=${HINT_WAIT_S}` };
    let doc = xhrResult(await xhrSend("POST", "v1/jobs", { body: form, headers }));
    while (!TERMINAL.has(doc.status)) {
      await sleep(POLL_MIN_MS);
      doc = await apiJson(`v1/jobs/${encodeURIComponent(doc.id)}`);
    }
    if (!doc.links.result) {
      const error = doc.error || { code: "failed", message: "the photo could not be colorized with these points" };
      throw new ApiError(0, error.code, error.message);
    }
    const url = await fetchBlobUrl(doc.links.result);
    download.href = url;
    this.node.dataset.hintJobId = doc.id;
    this.hintJobId = doc.id;  // its likely colours, given these hints, are offered from now on
    return url;
  }

  // The colours the model found most likely at (x, y) of the result shown now.
  async likelyColours(x, y) {
    const query = new URLSearchParams({ x: String(x), y: String(y) });
    const answer = await apiJson(`v1/jobs/${encodeURIComponent(this.hintJobId)}/items/0/likely-colours?${query}`);
    return answer.colors.map((c) => c.color);
  }

  // The original upload where the browser can show it; otherwise the result in grey, which
  // carries the original's lightness (the network changes colour only).
  showBefore(before, tag, resultUrl, path) {
    const greyFallback = () => {
      before.onerror = null;
      before.classList.add("greyscale");
      before.alt = `${path}, lightness only`;
      tag.textContent = "Before (grey)";
      before.src = resultUrl;
    };
    if (this.originalUrl) {
      before.alt = `${path}, original`;
      before.onerror = greyFallback;
      before.src = this.originalUrl;
    } else {
      greyFallback();
    }
  }

  addFailure(item) {
    this.failures += 1;
    const entry = document.createElement("li");
    const path = document.createElement("strong");
    path.textContent = item.path;
    const error = item.error || { code: "error", message: "failed" };
    const code = document.createElement("code");
    code.textContent = error.code;
    entry.append(path, `: ${error.message} `, code);
    this.failureList.append(entry);
    $("summary", this.failureBox).textContent = `${this.failures} ${this.failures === 1 ? "image" : "images"} could not be colorized`;
    this.failureBox.hidden = false;
    if (this.failures <= 10) this.failureBox.open = true;
  }

  async cancel() {
    this.cancelButton.disabled = true;
    try {
      this.show(await apiJson(`v1/jobs/${encodeURIComponent(this.id)}/cancel`, { method: "POST" }));
    } catch (error) {
      renderError(this.error, error, "Could not cancel");
    } finally {
      this.cancelButton.disabled = false;
    }
  }
}

// --- submitting -------------------------------------------------------------------------------

async function submitDirect(job, options) {
  const form = new FormData();
  form.append("file", job.file, job.file.name);
  for (const [name, value] of Object.entries(options)) form.append(name, String(value));
  const xhr = await xhrSend("POST", "v1/jobs", {
    body: form, headers: authHeaders(), onUploadProgress: (loaded) => job.uploadProgress(Math.min(loaded, job.file.size)),
  });
  return xhrResult(xhr);
}

async function putToStorage(url, blob, onProgress) {
  const xhr = await xhrSend("PUT", url, { body: blob, onUploadProgress: onProgress });
  if (xhr.status < 200 || xhr.status >= 300) throw errorFromResponse(xhr.status, xhr.responseText, null);
  return xhr;
}

// Large files go straight to storage (POST /v1/uploads, then one PUT or a PUT per part),
// never through the API; the job is then made from the stored upload.
async function submitPresigned(job, options) {
  const file = job.file;
  const upload = await apiJson("v1/uploads", { method: "POST", json: { size: file.size, filename: file.name } });
  if (upload.url) {
    await putToStorage(upload.url, file, (loaded) => job.uploadProgress(loaded));
  } else {
    const { part_size: partSize, parts } = upload.multipart;
    const uploaded = [];
    let sent = 0;
    for (const part of parts) {
      const start = (part.part_number - 1) * partSize;
      const blob = file.slice(start, Math.min(start + partSize, file.size));
      const xhr = await putToStorage(part.url, blob, (loaded) => job.uploadProgress(sent + loaded));
      const etag = xhr.getResponseHeader("ETag");
      if (!etag) {
        throw new ApiError(0, "storage_cors", "storage did not show this page the ETag of an uploaded part; "
          + "its CORS rules must expose the ETag header");
      }
      uploaded.push({ part_number: part.part_number, etag });
      sent += blob.size;
    }
    await apiJson(apiPath(upload.complete_url), { method: "POST", json: { parts: uploaded } });
  }
  return apiJson("v1/jobs", { method: "POST", json: { upload_id: upload.upload_id, filename: file.name, ...options } });
}

async function submit(job) {
  job.setStatus("uploading", "Uploading…");
  job.progress.value = 0;
  let doc;
  try {
    const options = jobOptions();
    doc = job.file.size > page.directUploadMaxBytes ? await submitPresigned(job, options) : await submitDirect(job, options);
  } catch (error) {
    job.failed(error, "Upload refused");
    return;
  } finally {
    page.uploading -= 1;
    pumpUploads();
  }
  job.created(doc);
  await job.follow();
}

function enqueueUpload(job) {
  job.setStatus("waiting", "Waiting to upload");
  page.uploadQueue.push(job);
  pumpUploads();
}

function pumpUploads() {
  while (page.uploading < UPLOAD_CONCURRENCY && page.uploadQueue.length) {
    page.uploading += 1;
    submit(page.uploadQueue.shift());
  }
}

function addFiles(files) {
  // New jobs go on top; the files of one drop keep their order there, and upload in that order.
  const views = Array.from(files).reverse().map((file) => new JobView(file)).reverse();
  views.forEach(enqueueUpload);
}

// --- drag and drop, file picker ---------------------------------------------------------------

ui.fileInput.addEventListener("change", () => {
  addFiles(ui.fileInput.files);
  ui.fileInput.value = "";  // choosing the same file again is a new job
});

for (const type of ["dragenter", "dragover"]) {
  ui.dropZone.addEventListener(type, (event) => {
    event.preventDefault();
    ui.dropZone.classList.add("dragging");
  });
}
for (const type of ["dragleave", "drop"]) {
  ui.dropZone.addEventListener(type, () => ui.dropZone.classList.remove("dragging"));
}
ui.dropZone.addEventListener("drop", (event) => {
  event.preventDefault();
  if (event.dataTransfer && event.dataTransfer.files.length) addFiles(event.dataTransfer.files);
});
// A file dropped beside the zone must not replace the page with the file.
window.addEventListener("dragover", (event) => event.preventDefault());
window.addEventListener("drop", (event) => event.preventDefault());

// --- jobs from before a reload -----------------------------------------------------------------

async function loadRecentJobs() {
  let listing;
  try {
    listing = await apiJson(`v1/jobs?limit=${RECENT_JOBS}`);
  } catch (error) {
    if (error.status !== 401) showNotice(error, "Could not list your recent jobs");
    return;  // 401: the models request asks for a key already
  }
  for (const doc of listing.jobs) {
    if (document.querySelector(`.job[data-job-id="${CSS.escape(doc.id)}"]`)) continue;
    JobView.restored(doc).follow();
  }
}

showStoredKey();
loadModels();
loadRecentJobs();
