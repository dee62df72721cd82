// One Job followed live: over the socket while it is up, over HTTP (status, progress, the log cursor)
// while it is down, back on the socket when it returns. Log lines are numbered (Linkis's 1-based
// fromLine), so whichever way a line arrives it is shown once, in order, with no gap.
import { FINAL, linkis, sleep } from "./api.js";
import { socket } from "./socket.js";

const ENTRANCE = "/api/rest_j/v1/entrance";
const byExec = new Map();
const byTag = new Map();
const LEVEL = /^\S+ \S+ (ERROR|WARN|INFO)\b/;

socket.onPush((frame) => {
  const run = byExec.get(frame.data?.execID) || byTag.get(frame.websocketTag);
  if (run) run.push(frame);
});
socket.onState((state) => {
  for (const run of byExec.values()) if (!run.final) run.socketState(state);
});

export class JobRun extends EventTarget {
  constructor(code = "", runType = "sql") {
    super();
    Object.assign(this, { code, runType, execID: null, taskID: null, status: "-", progress: 0, progressInfo: [],
      lines: [], cursor: 1, startedAt: null, endedAt: null, task: null, results: [], error: null, mode: null,
      fetching: null, again: false, polling: false });
  }
  get final() { return FINAL.includes(this.status); }
  emit(what) { this.dispatchEvent(new CustomEvent("change", { detail: what })); }
  register() { byExec.set(this.execID, this); }

  /** Submit over the socket when it is up, else over HTTP; then follow the Job. */
  async submit() {
    this.startedAt = Date.now(); this.setStatus("Submitting");
    const body = { executeApplicationName: "spark", executionCode: this.code, runType: this.runType, params: {},
      source: { scriptPath: "console" } };
    let data;
    if (socket.live) {
      const tag = `run-${Math.random().toString(36).slice(2, 10)}`;
      byTag.set(tag, this);
      try { data = await socket.send(`${ENTRANCE}/execute`, body, tag); this.mode = "ws"; }
      catch (err) { byTag.delete(tag); if (socket.live) throw err; }  // dropped meanwhile: HTTP below
    }
    if (!data) { data = await linkis("POST", "/entrance/execute", body); this.mode = "http"; }
    this.execID = data.execID; this.taskID = data.taskID; this.register();
    this.emit("ids");
    if (this.mode === "http") this.poll();
  }

  /** Follow a Job someone else submitted (a reopened history entry, a work's task). */
  async follow(execID, taskID) {
    Object.assign(this, { execID, taskID, startedAt: this.startedAt || Date.now() });
    this.register();
    const { status } = await linkis("GET", `/entrance/${execID}/status`);
    this.setStatus(status);  // a final one finishes
    if (this.final) return;
    if (socket.live) this.socketState("live"); else this.poll();
  }

  push(frame) {
    if (!this.execID && frame.data?.execID) {
      Object.assign(this, { execID: frame.data.execID, taskID: frame.data.taskID }); this.register();
    }
    const kind = frame.method.slice(frame.method.lastIndexOf("/") + 1);
    if (kind === "status") this.setStatus(frame.data.status);
    else if (kind === "progress") this.setProgress(frame.data);
    else if (kind === "log") {
      const text = frame.data.log[3] || "";
      const lines = text ? text.split("\n") : [];
      this.accept(frame.data.fromLine - lines.length, lines, "ws");
    }
  }

  /** Lines ``start``.. as they arrived; a gap before them is filled over HTTP first. */
  accept(start, lines, via) {
    if (start > this.cursor) { this.catchUp(); return; }
    const fresh = lines.slice(this.cursor - start);
    if (!fresh.length) return;
    const from = this.lines.length;
    for (const text of fresh) this.lines.push({ n: this.cursor++, text, via, level: (LEVEL.exec(text) || [])[1] || "INFO" });
    this.emit({ lines: from });
  }

  /** The log from the cursor on, over HTTP (one request at a time; asked again if asked meanwhile). */
  catchUp() {
    if (this.fetching) { this.again = true; return this.fetching; }
    this.fetching = (async () => {
      do {
        this.again = false;
        try {
          const data = await linkis("GET", `/entrance/${this.execID}/log?fromLine=${this.cursor}&size=5000`);
          const text = data.log[3] || "";
          const lines = text ? text.split("\n") : [];
          this.accept(data.fromLine - lines.length, lines, "http");
          if (lines.length >= 5000) this.again = true;
        } catch (err) { console.warn("log catch-up failed", err); }
      } while (this.again);
      this.fetching = null;
    })();
    return this.fetching;
  }

  setStatus(status) {
    if (this.final || status === this.status) return;
    this.status = status; this.emit("status");
    if (this.final) this.finish();
  }

  setProgress(data) {
    this.progress = Number(data.progress) || 0; this.progressInfo = data.progressInfo || []; this.emit("progress");
  }

  socketState(state) {
    if (state === "live" && this.execID && this.mode !== "ws") {
      const tag = `sub-${Math.random().toString(36).slice(2, 10)}`;
      byTag.set(tag, this);
      socket.send(`${ENTRANCE}/${this.execID}/subscribe`, {}, tag).then((data) => {
        this.mode = "ws"; this.emit("mode");
        this.setStatus(data.status);
        this.catchUp();  // what was written while nobody pushed it
      }).catch(() => {});
    } else if (state !== "live" && this.mode === "ws") {
      this.mode = "http"; this.emit("mode"); this.poll();
    }
  }

  /** Follow over HTTP while the socket is not carrying this Job. */
  async poll() {
    if (this.polling) return;
    this.polling = true;
    while (!this.final && this.mode !== "ws") {
      try {
        const [status, progress] = await Promise.all([
          linkis("GET", `/entrance/${this.execID}/status`), linkis("GET", `/entrance/${this.execID}/progress`)]);
        await this.catchUp();
        this.setProgress(progress);
        this.setStatus(status.status);
      } catch (err) { console.warn("poll failed", err); }
      if (!this.final) await sleep(1000);
    }
    this.polling = false;
  }

  async kill() { return linkis("POST", `/entrance/${this.execID}/kill`); }

  /** The rest of the log, the history record and the result sets of a final Job. */
  async finish() {
    this.endedAt = this.endedAt || Date.now();
    if (this.status === "Succeed") this.setProgress({ progress: 1, progressInfo: this.progressInfo });
    await this.catchUp();
    try {
      this.task = (await linkis("GET", `/jobhistory/${this.taskID}/get`)).task;
      if (this.task.costTime && this.startedAt === null) this.startedAt = this.endedAt - this.task.costTime;
      if (this.task.resultLocation) {
        const tree = await linkis("GET", `/filesystem/getDirFileTrees?path=${encodeURIComponent(this.task.resultLocation)}`);
        this.results = (tree.dirFileTrees?.children || []).map((c) => c.path);
      }
      if (this.status !== "Succeed") {
        const errors = this.lines.filter((l) => l.level === "ERROR").map((l) => l.text);
        this.error = { message: this.task.errDesc || `the Job ended ${this.status}`, code: this.task.errCode, errors };
      }
    } catch (err) { this.error = { message: String(err.message || err), errors: [] }; }
    this.emit("results");
  }

  /** A Job from the history: its log (whole) and results, or followed live when it has not ended. */
  static async fromHistory(task) {
    const run = new JobRun(task.executionCode || "", task.runType || "sql");
    run.startedAt = task.createdTime || Date.now();
    if (FINAL.includes(task.status)) {
      Object.assign(run, { execID: task.execId, taskID: task.taskID, endedAt: task.endTime || task.updatedTime });
      if (task.logPath) {
        const data = await linkis("GET", `/filesystem/openLog?path=${encodeURIComponent(task.logPath)}`);
        const text = data.log[3] || "";
        run.accept(1, text ? text.split("\n") : [], "http");
      }
      run.status = task.status;
      await run.finishFromHistory();
    } else {
      await run.follow(task.execId, task.taskID);
    }
    return run;
  }

  async finishFromHistory() {
    const catchUp = this.catchUp; this.catchUp = async () => {};
    try { await this.finish(); } finally { this.catchUp = catchUp; this.fetching = null; }
  }
}

export const elapsed = (run) => {
  if (!run?.startedAt) return "-";
  const ms = (run.endedAt || Date.now()) - run.startedAt;
  return `${(ms / 1000).toFixed(1)} s`;
};
