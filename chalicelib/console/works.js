// Works: list/search, create/edit/delete, start a task, follow it (status, run time, log), cancel, retry;
// the schedule (run_frequency, paused, timezone) is part of the form.
import { works } from "./api.js";
import { $, h, renderLines } from "./dom.js";
import { JobRun } from "./run.js";

const TASK_STATUS = ["succeeded", "running", "queued", "failed", "cancelled", "timed out", "waiting for retry", "inited"];
let selected = null;  // the work being edited, with its version
let followed = null, timer = null;

const field = (id) => $(`#w-${id}`);

function fill(work) {
  selected = work;
  $("#work-form-title").textContent = work ? `Edit ${work.name}` : "New work";
  field("name").value = work?.name || ""; field("description").value = work?.description || "";
  field("type").value = work?.type || "BATCH"; field("type").disabled = !!work;
  field("category").value = work?.category || "SPARK_SQL"; field("dir").value = work?.work_directory || "";
  field("main").value = work?.main_class_name || ""; field("params").value = (work?.extra_params || []).join("\n");
  field("java").value = work?.java_version || ""; field("freq").value = work?.run_frequency || "once";
  field("tz").value = work?.timezone || "UTC"; field("paused").checked = !!work?.paused;
  $("#work-start").disabled = $("#work-delete").disabled = !work;
  if (work) loadTasks(); else $("#tasks-table tbody").replaceChildren();
}

const say = (text, bad = false) => { $("#work-message").textContent = text; $("#work-message").className = bad ? "error" : ""; };

export async function showWorks() {
  const q = $("#works-q").value.trim();
  try {
    const { data } = await works("GET", q ? `/works/search?q=${encodeURIComponent(q)}&limit=100` : "/works?limit=100");
    $("#works-table tbody").replaceChildren(...data.map((w) => h("tr", { "aria-selected": String(w.work_id === selected?.work_id) },
      h("td", {}, h("button", { type: "button", onclick: () => open(w.work_id) }, w.name)),
      h("td", { text: w.category }), h("td", { text: `${w.run_frequency}${w.paused ? " (paused)" : ""}` }),
      h("td", { text: w.active_task_id || "" }))));
  } catch (err) { say(err.message, true); }
}

async function open(id) {
  const { data, etag } = await works("GET", `/works/${id}`);
  fill({ ...data, etag }); showWorks();
}

async function save(event) {
  event.preventDefault();
  const body = {
    name: field("name").value, description: field("description").value, category: field("category").value,
    work_directory: field("dir").value || null, main_class_name: field("main").value || null,
    extra_params: field("params").value.split("\n").map((s) => s.trim()).filter(Boolean),
    java_version: field("java").value || null, run_frequency: field("freq").value,
    timezone: field("tz").value || "UTC", paused: field("paused").checked,
  };
  try {
    if (selected) {
      const { data, etag } = await works("PATCH", `/works/${selected.work_id}`, body, { "If-Match": selected.etag || `"${selected.version}"` });
      fill({ ...data, etag }); say("saved");
    } else {
      const { data, etag } = await works("POST", "/works", { ...body, type: field("type").value });
      fill({ ...data, etag }); say("created");
    }
    showWorks();
  } catch (err) { say(err.message, true); }
}

async function loadTasks() {
  if (!selected) return;
  const { data } = await works("GET", `/works/${selected.work_id}/tasks?limit=20`);
  $("#tasks-table tbody").replaceChildren(...data.map((t) => h("tr", {},
    h("td", {}, h("code", { text: t.task_id.slice(0, 8) })), h("td", { "data-status": t.status, text: TASK_STATUS[t.status] ?? t.status }),
    h("td", { text: t.run_time != null ? `${t.run_time} s` : "" }), h("td", { class: "error", text: t.error || "" }),
    h("td", {},
      h("button", { type: "button", onclick: () => follow(t) }, "Follow"),
      [1, 2, 6, 7].includes(t.status) ? h("button", { type: "button", onclick: () => act(t, "cancel") }, "Cancel") : null,
      [3, 4, 5].includes(t.status) ? h("button", { type: "button", onclick: () => act(t, "retry") }, "Retry") : null))));
}

async function act(task, what) {
  try { const { data } = await works("POST", `/tasks/${task.task_id}/${what}`); say(`${what}: ${TASK_STATUS[data.status]}`); follow(data); }
  catch (err) { say(err.message, true); }
  loadTasks(); showWorks();
}

/** Show a task's status and run time (polled) and its Job's log (live, see run.js). */
async function follow(task) {
  clearInterval(timer);
  if (followed) followed.run?.removeEventListener("change", followed.paint);
  $("#follow-title").textContent = `Task ${task.task_id.slice(0, 8)}`;
  const run = new JobRun();
  const paint = (event) => { if (event.detail?.lines !== undefined) renderLines($("#follow-log"), run.lines, event.detail.lines, true); };
  followed = { task, run, paint };
  renderLines($("#follow-log"), [], 0, true);
  const refresh = async () => {
    const { data } = await works("GET", `/tasks/${task.task_id}`);
    $("#follow-status").textContent = TASK_STATUS[data.status] ?? String(data.status);
    $("#follow-status").dataset.status = data.status;
    $("#follow-time").textContent = data.run_time != null ? ` ${data.run_time} s` : "";
    if (data.exec_id && !run.execID) { run.addEventListener("change", paint); run.follow(data.exec_id, data.job_task_id); }
    if (![1, 2, 6, 7].includes(data.status)) { clearInterval(timer); loadTasks(); showWorks(); }
  };
  await refresh();
  timer = setInterval(() => refresh().catch(() => {}), 1000);
}

export function initWorks() {
  $("#work-form").addEventListener("submit", save);
  $("#works-refresh").addEventListener("click", showWorks);
  $("#works-q").addEventListener("keydown", (e) => { if (e.key === "Enter") showWorks(); });
  $("#works-new").addEventListener("click", () => { fill(null); say(""); field("name").focus(); });
  $("#work-start").addEventListener("click", async () => {
    try { const { data } = await works("POST", `/works/${selected.work_id}/tasks`); say("task started"); follow(data); loadTasks(); showWorks(); }
    catch (err) { say(err.message, true); }
  });
  $("#work-delete").addEventListener("click", async () => {
    if (!confirm(`Delete ${selected.name}?`)) return;
    try { await works("DELETE", `/works/${selected.work_id}`, undefined, { "If-Match": `"${selected.version}"` }); fill(null); say("deleted"); showWorks(); }
    catch (err) { say(err.message, true); }
  });
}
