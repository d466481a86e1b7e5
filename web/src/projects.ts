// Projects on the board: the switcher (which project the board shows and new tasks go to), the
// "new project" form and the members dialog. The list is re-read when the live view changes and
// every few seconds, so a project someone shares with you appears, and one you leave disappears.

import { Code, ConnectError } from "@connectrpc/connect";
import { requestId, type TaskClient } from "./api";
import { byId, h } from "./dom";
import { ProjectRole, type Project } from "./gen/taskservice/task_service_pb";
import { identity } from "./session";

const REFRESH_MS = 2000;
const ROLE_NAMES: Record<number, string> = {
  [ProjectRole.VIEWER]: "Viewer",
  [ProjectRole.EDITOR]: "Editor",
  [ProjectRole.OWNER]: "Owner",
};

export class Projects {
  private list: Project[] = [];
  private timer: number | undefined;
  private pending = false;
  private readonly switcher = byId<HTMLSelectElement>("project-switcher");
  private readonly membersButton = byId<HTMLButtonElement>("open-members");
  private readonly dialog = byId<HTMLDialogElement>("members");
  private readonly form = byId<HTMLFormElement>("members-form");

  constructor(
    private readonly client: TaskClient,
    private readonly changed: () => void,
    private readonly say: (message: string) => void,
  ) {
    this.switcher.addEventListener("change", () => this.show());
    this.membersButton.addEventListener("click", () => void this.openMembers());
    this.form.addEventListener("submit", (event) => {
      event.preventDefault();
      void this.addMember();
    });
    this.form.querySelector('[value="close"]')!.addEventListener("click", () => this.dialog.close());
    const create = byId<HTMLFormElement>("new-project");
    create.addEventListener("submit", (event) => {
      event.preventDefault();
      void this.create(create);
    });
  }

  /** The project the board shows ("" for every task the user may see). */
  get current(): string {
    return this.switcher.value;
  }

  start(): void {
    this.stop();
    void this.refresh();
    this.timer = window.setInterval(() => void this.refresh(), REFRESH_MS);
  }

  stop(): void {
    if (this.timer !== undefined) window.clearInterval(this.timer);
    this.timer = undefined;
  }

  /** Re-read the projects soon (at most one request in flight). */
  refreshSoon(): void {
    if (!this.pending) void this.refresh();
  }

  async refresh(): Promise<void> {
    this.pending = true;
    try {
      const found: Project[] = [];
      let pageToken = "";
      do {
        const page = await this.client.listProjects({ pageSize: 1000, pageToken });
        found.push(...page.projects);
        pageToken = page.nextPageToken;
      } while (pageToken);
      this.list = found;
      this.show();
    } catch (error) {
      if (ConnectError.from(error).code !== Code.Unauthenticated) return;
    } finally {
      this.pending = false;
    }
  }

  private show(prefer = this.switcher.value): void {
    const chosen = this.list.some((p) => p.id === prefer) ? prefer : "";
    this.switcher.replaceChildren(
      h("option", { value: "" }, "All my tasks"),
      ...this.list.map((p) => h("option", { value: p.id, selected: p.id === chosen }, p.title)),
    );
    this.switcher.value = chosen;
    this.membersButton.hidden = !chosen;
    if (!chosen && this.dialog.open) this.dialog.close();
    this.changed();
  }

  private async create(form: HTMLFormElement): Promise<void> {
    const title = (form.elements.namedItem("title") as HTMLInputElement).value.trim();
    try {
      const project = await this.client.createProject({ title, requestId: requestId() });
      this.list.push(project);
      this.show(project.id);
      form.reset();
    } catch (error) {
      this.say(ConnectError.from(error).rawMessage);
    }
  }

  private async openMembers(): Promise<void> {
    this.error("");
    try {
      this.renderMembers(await this.client.getProject({ id: this.current }));
      if (!this.dialog.open) this.dialog.showModal();
    } catch (error) {
      this.say(ConnectError.from(error).rawMessage);
    }
  }

  private renderMembers(project: Project): void {
    const me = identity()?.userId;
    const items = [...project.members]
      .sort((a, b) => a.user.localeCompare(b.user))
      .map((member) => {
        const remove = h(
          "button",
          { type: "button", class: "link", "data-testid": "member-remove", "aria-label": `Remove ${member.user}` },
          member.user === me ? "Leave" : "Remove",
        );
        remove.addEventListener("click", () => void this.setRole(member.user, ProjectRole.UNSPECIFIED));
        return h(
          "li",
          { "data-testid": "member", "data-user": member.user },
          h("span", { class: "member-user" }, member.user),
          " ",
          h("span", { class: "badge" }, ROLE_NAMES[member.role] ?? "?"),
          " ",
          remove,
        );
      });
    byId("member-list").replaceChildren(...items);
  }

  private async addMember(): Promise<void> {
    const user = (this.form.elements.namedItem("user") as HTMLInputElement).value.trim();
    const role = Number((this.form.elements.namedItem("role") as HTMLSelectElement).value) as ProjectRole;
    if (await this.setRole(user, role)) this.form.reset();
  }

  private async setRole(user: string, role: ProjectRole): Promise<boolean> {
    try {
      const project = await this.client.setProjectMember({ projectId: this.current, user, role });
      this.renderMembers(project);
      this.error("");
      void this.refresh();
      return true;
    } catch (error) {
      this.error(ConnectError.from(error).rawMessage);
      return false;
    }
  }

  private error(message: string): void {
    this.form.querySelector(".members-error")!.textContent = message;
  }
}
