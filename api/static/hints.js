"use strict";

// Colour hints on the web page: under a single photo colorized by a model that takes hints,
// the original photo to click on. Each click places a point; its colour is picked from the
// colours the model found most likely there (GET .../likely-colours), or freely. "Re-colorize" sends the same file again with
// the points as "hints" and "Prefer: wait", and shows the new result in place of the old one.
//
// Points are fractions of the photo as the browser shows it, which is upright (the browser
// applies its EXIF orientation, as the service does before colorizing).

const HINT_WAIT_S = 30;
const HINT_SWATCHES = 5;
// Where the swatches are sampled around a point, as fractions of the photo's longer side.
const SWATCH_OFFSETS = [[0, 0], [-0.04, 0], [0.04, 0], [0, -0.04], [0, 0.04]];
const DEFAULT_HINT_COLOUR = "#c03030";

function hexColour(red, green, blue) {
  return `#${[red, green, blue].map((v) => Math.round(v).toString(16).padStart(2, "0")).join("")}`;
}

// The distinct colours of the image around (x, y): its mean colour in a small window at each offset.
function coloursAround(image, x, y) {
  const canvas = document.createElement("canvas");
  canvas.width = image.naturalWidth;
  canvas.height = image.naturalHeight;
  const context = canvas.getContext("2d", { willReadFrequently: true });
  context.drawImage(image, 0, 0);
  const side = Math.max(canvas.width, canvas.height);
  const half = Math.max(1, Math.round(side * 0.01));
  const colours = [];
  for (const [dx, dy] of SWATCH_OFFSETS) {
    const cx = Math.min(canvas.width - 1, Math.max(0, Math.round(x * canvas.width + dx * side)));
    const cy = Math.min(canvas.height - 1, Math.max(0, Math.round(y * canvas.height + dy * side)));
    const left = Math.max(0, cx - half);
    const top = Math.max(0, cy - half);
    const width = Math.min(canvas.width - left, 2 * half + 1);
    const height = Math.min(canvas.height - top, 2 * half + 1);
    const { data } = context.getImageData(left, top, width, height);
    const sums = [0, 0, 0];
    for (let i = 0; i < data.length; i += 4) {
      sums[0] += data[i];
      sums[1] += data[i + 1];
      sums[2] += data[i + 2];
    }
    const count = data.length / 4;
    const colour = hexColour(sums[0] / count, sums[1] / count, sums[2] / count);
    if (!colours.includes(colour)) colours.push(colour);
  }
  return colours.slice(0, HINT_SWATCHES);
}

class HintEditor {
  // ``resubmit(hints)`` creates the new job and returns the blob: URL of its result;
  // ``likelyAt(x, y)`` resolves to the colours the model of the current result found most likely there.
  constructor(container, originalUrl, afterImage, resubmit, likelyAt) {
    this.points = [];
    this.selected = null;
    this.afterImage = afterImage;
    this.resubmit = resubmit;
    this.likelyAt = likelyAt;
    const node = document.getElementById("hint-template").content.firstElementChild.cloneNode(true);
    this.node = node;
    this.photo = node.querySelector(".hint-photo");
    this.markers = node.querySelector(".hint-markers");
    this.list = node.querySelector(".hint-list");
    this.swatches = node.querySelector(".hint-swatches");
    this.picker = node.querySelector(".hint-picker");
    this.button = node.querySelector(".hint-recolorize");
    this.size = node.querySelector(".hint-size");
    this.status = node.querySelector(".hint-status");
    this.photo.src = originalUrl;
    this.photo.addEventListener("click", (event) => this.place(event));
    this.picker.addEventListener("input", () => this.colour(this.picker.value));
    this.button.addEventListener("click", () => this.recolorize());
    container.append(node);
    this.render();
  }

  place(event) {
    const box = this.photo.getBoundingClientRect();
    const x = Math.min(1, Math.max(0, (event.clientX - box.left) / box.width));
    const y = Math.min(1, Math.max(0, (event.clientY - box.top) / box.height));
    const radius = this.size.value ? Number(this.size.value) : null;  // empty: the model's smallest spot
    const point = { x: Number(x.toFixed(4)), y: Number(y.toFixed(4)), color: DEFAULT_HINT_COLOUR, radius, offered: [], picked: false };
    this.points.push(point);
    this.selected = point;
    this.render();
    this.offer(point);
  }

  // The model's likely colours at the point; the result's own colours around it where the
  // service has none to give (a result from before the model kept them).
  async offer(point) {
    let offered;
    try {
      offered = await this.likelyAt(point.x, point.y);
    } catch (_) {
      offered = this.afterImage.complete && this.afterImage.naturalWidth ? coloursAround(this.afterImage, point.x, point.y) : [];
    }
    point.offered = offered.slice(0, HINT_SWATCHES);
    if (!point.picked && point.offered.length) point.color = point.offered[0];
    this.render();
  }

  colour(value) {
    if (!this.selected) return;
    this.selected.color = value.toLowerCase();
    this.selected.picked = true;
    this.render();
  }

  remove(point) {
    this.points = this.points.filter((p) => p !== point);
    if (this.selected === point) this.selected = this.points[this.points.length - 1] || null;
    this.render();
  }

  hints() {
    return this.points.map(({ x, y, color, radius }) => (radius ? { x, y, color, radius } : { x, y, color }));
  }

  render() {
    this.markers.replaceChildren(...this.points.map((point, index) => {
      const marker = document.createElement("span");
      marker.className = point === this.selected ? "hint-marker selected" : "hint-marker";
      if (point.radius) marker.classList.add("spot");
      marker.style.setProperty("left", `${point.x * 100}%`);
      marker.style.setProperty("top", `${point.y * 100}%`);
      marker.style.setProperty("background", point.color);
      marker.title = `Point ${index + 1}: ${point.color}`;
      return marker;
    }));
    this.list.replaceChildren(...this.points.map((point, index) => {
      const entry = document.createElement("li");
      entry.className = "hint-entry";
      const choose = document.createElement("button");
      choose.type = "button";
      choose.className = point === this.selected ? "link hint-choose selected" : "link hint-choose";
      choose.textContent = `Point ${index + 1}`;
      choose.addEventListener("click", () => {
        this.selected = point;
        this.render();
      });
      const chip = document.createElement("span");
      chip.className = "hint-chip";
      chip.style.setProperty("background", point.color);
      const remove = document.createElement("button");
      remove.type = "button";
      remove.className = "secondary hint-remove";
      remove.textContent = "Remove";
      remove.setAttribute("aria-label", `Remove point ${index + 1}`);
      remove.addEventListener("click", () => this.remove(point));
      entry.append(choose, chip, ` ${point.color} `, remove);
      return entry;
    }));
    const offered = this.selected ? this.selected.offered : [];
    this.swatches.replaceChildren(...offered.map((colour) => {
      const swatch = document.createElement("button");
      swatch.type = "button";
      swatch.className = "hint-swatch";
      swatch.style.setProperty("background", colour);
      swatch.title = colour;
      swatch.setAttribute("aria-label", `Use ${colour}`);
      swatch.addEventListener("click", () => this.colour(colour));
      return swatch;
    }));
    this.picker.disabled = !this.selected;
    if (this.selected) this.picker.value = this.selected.color;
    this.button.disabled = !this.points.length;
  }

  async recolorize() {
    this.button.disabled = true;
    this.status.textContent = "Colorizing with your colours…";
    this.status.classList.remove("error");
    const started = performance.now();
    try {
      const url = await this.resubmit(this.hints());
      this.afterImage.src = url;
      const seconds = ((performance.now() - started) / 1000).toFixed(1);
      this.status.textContent = `Re-colorized with ${this.points.length} point(s) in ${seconds} s.`;
      this.node.dataset.recolorized = String(Number(this.node.dataset.recolorized || 0) + 1);
    } catch (error) {
      this.status.textContent = `${explain(error)} ${error.message}`;
      this.status.classList.add("error");
    } finally {
      this.button.disabled = !this.points.length;
    }
  }
}
