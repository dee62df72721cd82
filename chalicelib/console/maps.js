// Maps: a scope and session, files loaded as tables, their schema, a map query rendered to PNG by the
// geo API; dragging or zooming the view asks for a new render of the new bounding box (debounced).
import { geo } from "./api.js";
import { $, h } from "./dom.js";

const WIDTH = 512, HEIGHT = 448;
const PARAMS = {
  pointmap: { point_color: "#2DEF4A", point_size: 3, opacity: 0.5, coordinate_system: "EPSG:4326" },
  heatmap: { map_zoom_level: 10, coordinate_system: "EPSG:4326" },
  choropleth: { color_gradient: ["#0000FF", "#FF0000"], color_bound: [2.5, 5], opacity: 1, coordinate_system: "EPSG:4326" },
  weighted: { color_gradient: ["#0000FF", "#FF0000"], color_bound: [0, 2], size_bound: [0, 10], opacity: 1, coordinate_system: "EPSG:4326" },
  fishnetmap: { color_gradient: ["#0000FF", "#FF0000"], cell_size: 4, cell_spacing: 1, opacity: 1, coordinate_system: "EPSG:4326" },
  icon_viz: { icon_path: "", coordinate_system: "EPSG:4326" },
};
let rendering = 0, debounce = null;

const scope = () => ({ scope: $("#m-scope").value.trim(), session: $("#m-session").value.trim() || "spark" });
const say = (text, bad = false) => { $("#m-message").textContent = text; $("#m-message").className = bad ? "error" : ""; };
const box = () => $("#m-box").value.split(",").map(Number);

async function openScope() {
  try {
    await geo("POST", "/scope", { scope: scope().scope });
    if (scope().session !== "spark") {
      await geo("POST", "/session", scope()).catch((err) => { if (!/exists/.test(err.message)) throw err; });
    }
    say(`scope ${scope().scope} open`);
    refreshTables();
  } catch (err) { say(err.message, true); }
}

function schemaOf(text) {
  const rows = text.split("\n").map((s) => s.trim()).filter(Boolean);
  return rows.length ? rows.map((row) => { const [name, type] = row.split(":").map((s) => s.trim()); return { [name]: type || "string" }; }) : undefined;
}

async function load() {
  const table = { name: $("#m-table").value.trim(), format: $("#m-format").value, path: $("#m-path").value.trim() };
  const schema = schemaOf($("#m-schema").value);
  if (schema) table.schema = schema;
  if (table.format === "csv") table.options = { header: "True", delimiter: ",", ...(schema ? {} : { inferSchema: "True" }) };
  say("loading...");
  try { await geo("POST", "/loadfile", { ...scope(), tables: [table] }, (s) => say(`loading (${s})...`)); say(`loaded ${table.name}`); refreshTables(); }
  catch (err) { say(err.message, true); }
}

async function refreshTables() {
  try {
    const { result } = await geo("POST", "/query", { ...scope(), sql: "show tables" });
    const names = result.map((row) => (Array.isArray(row) ? row[1] : row)).filter(Boolean);
    $("#m-tables").replaceChildren(...names.map((name) => h("li", {}, h("button", { type: "button", onclick: () => schema(name) }, name))));
  } catch (err) { say(err.message, true); }
}

async function schema(name) {
  const s = scope();
  try {
    const info = await geo("GET", `/table/${encodeURIComponent(s.scope)}/${encodeURIComponent(s.session)}/${encodeURIComponent(name)}`);
    $("#m-schema-view").textContent = `${info.table} (${info.num_rows} rows)\n` +
      info.schema.map((c) => Object.entries(c).map(([k, v]) => `  ${k}: ${v}`).join("")).join("\n");
  } catch (err) { say(err.message, true); }
}

/** The body of a render of the current form (the browser tests send the same to the API). */
export function mapRequest() {
  let params = {};
  try { params = JSON.parse($("#m-params").value || "{}"); } catch { throw new Error("params are not valid JSON"); }
  return { kind: $("#m-kind").value,
    body: { ...scope(), sql: $("#m-sql").value, params: { ...params, width: WIDTH, height: HEIGHT, bounding_box: box() } } };
}

async function render() {
  const mine = ++rendering;
  let req;
  try { req = mapRequest(); } catch (err) { $("#m-status").textContent = err.message; return; }
  $("#m-status").textContent = "rendering...";
  try {
    const answer = await geo("POST", `/${req.kind}`, req.body, (s) => { $("#m-status").textContent = `rendering (${s})...`; });
    if (mine !== rendering) return;  // a newer render was asked for
    const img = $("#m-img");
    img.src = `data:image/png;base64,${answer.result}`;
    img.style.transform = "";
    img.dataset.box = req.body.params.bounding_box.join(",");
    $("#m-status").textContent = `rendered ${req.kind} of [${req.body.params.bounding_box.map((v) => v.toFixed(5)).join(", ")}]`;
  } catch (err) { if (mine === rendering) $("#m-status").textContent = err.message; }
}

/** Move the box by a pixel offset and zoom it by ``factor`` around a pixel; render after a pause. */
function moveBox(dx, dy, factor = 1, cx = WIDTH / 2, cy = HEIGHT / 2) {
  let [x0, y0, x1, y1] = box();
  const sx = (x1 - x0) / WIDTH, sy = (y1 - y0) / HEIGHT;
  x0 -= dx * sx; x1 -= dx * sx; y0 += dy * sy; y1 += dy * sy;
  if (factor !== 1) {
    const px = x0 + cx * sx, py = y1 - cy * sy;
    x0 = px - (px - x0) * factor; x1 = px + (x1 - px) * factor; y0 = py - (py - y0) * factor; y1 = py + (y1 - py) * factor;
  }
  $("#m-box").value = [x0, y0, x1, y1].map((v) => +v.toFixed(6)).join(",");
  clearTimeout(debounce);
  debounce = setTimeout(render, 400);
}

function initPanZoom() {
  const view = $("#m-view"), img = $("#m-img");
  let drag = null, moved = [0, 0];
  view.addEventListener("pointerdown", (e) => { drag = [e.clientX, e.clientY]; view.setPointerCapture(e.pointerId); });
  view.addEventListener("pointermove", (e) => {
    if (!drag) return;
    moved = [e.clientX - drag[0], e.clientY - drag[1]];
    img.style.transform = `translate(${moved[0]}px, ${moved[1]}px)`;
  });
  view.addEventListener("pointerup", () => {
    if (drag && (moved[0] || moved[1])) moveBox(moved[0], moved[1]);
    drag = null; moved = [0, 0];
  });
  view.addEventListener("wheel", (e) => {
    e.preventDefault();
    const rect = img.getBoundingClientRect();
    moveBox(0, 0, e.deltaY > 0 ? 1.25 : 0.8, e.clientX - rect.left, e.clientY - rect.top);
  }, { passive: false });
  view.addEventListener("keydown", (e) => {
    const step = 40, keys = { ArrowLeft: [step, 0], ArrowRight: [-step, 0], ArrowUp: [0, step], ArrowDown: [0, -step] };
    if (keys[e.key]) { e.preventDefault(); moveBox(...keys[e.key]); }
    else if (e.key === "+" || e.key === "=") moveBox(0, 0, 0.8);
    else if (e.key === "-") moveBox(0, 0, 1.25);
  });
}

export function initMaps() {
  const setParams = () => { $("#m-params").value = JSON.stringify(PARAMS[$("#m-kind").value]); };
  setParams();
  $("#m-kind").addEventListener("change", setParams);
  $("#m-scope-create").addEventListener("click", openScope);
  $("#m-load").addEventListener("click", load);
  $("#m-tables-refresh").addEventListener("click", refreshTables);
  $("#m-render").addEventListener("click", render);
  initPanZoom();
}
