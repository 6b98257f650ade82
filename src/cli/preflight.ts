// What `vipd validate` can tell about this machine beyond the file: links
// the VIPs name that are not here, hook programs that cannot run. Warnings,
// never errors: a link may come later (a VLAN or bond set up after vipd, a
// file checked on another machine) and so may a hook program, and vipd
// handles both at run time (it waits for the link; each hook run that cannot
// start is logged).
import { programProblem } from "../agent/hooks.ts";
import { type ConfigIssue, type Settings } from "../config/index.ts";
import { issue, render } from "../config/issue.ts";
import { Rtnl } from "../kernel/rtnl.ts";
import { describeError } from "../log.ts";

/** Looks links up by name in this network namespace: null when the link is there, "ENODEV" when it is not, else why not. */
export type LinkCheck = (names: readonly string[]) => Promise<Map<string, string | null>>;

/** The kernel's answer, through rtnetlink (a lookup needs no privilege). */
export const kernelLinks: LinkCheck = async (names) => {
  const rtnl = Rtnl.open();
  try {
    const out = new Map<string, string | null>();
    for (const name of names) {
      try {
        await rtnl.link(name);
        out.set(name, null);
      } catch (err) {
        out.set(name, (err as { code?: string }).code === "ENODEV" ? "ENODEV" : describeError(err));
      }
    }
    return out;
  } finally {
    rtnl.close();
  }
};

const HOOKS = ["acquired", "released", "fenced"] as const;

/** Warnings about this machine for a valid configuration; links are checked only with a LinkCheck. */
export async function preflight(settings: Settings, links: LinkCheck | undefined): Promise<ConfigIssue[]> {
  const warnings: ConfigIssue[] = [];
  const names = [...new Set(settings.vips.map((v) => v.link))];
  let found = new Map<string, string | null>();
  try {
    if (links) found = await links(names);
  } catch (err) {
    found = new Map();
    warnings.push(issue("this machine", "", "its links", "no answer", `could not list this network namespace's links to check the VIPs' (${describeError(err)})`));
  }
  for (const vip of settings.vips) {
    const why = found.get(vip.link);
    if (why === undefined || why === null) continue;
    const absent = why === "ENODEV";
    warnings.push(issue(`document ${vip.document}`, "link", "a link of this network namespace", render(vip.link),
      absent
        ? `expected a link of this network namespace, received ${render(vip.link)}, which is not here: vipd stands for ${vip.ip} only once it appears (a typo, or a link set up later?)`
        : `looking up link ${render(vip.link)}: ${why}`));
  }
  for (const event of HOOKS) {
    const argv = settings.hooks[event];
    const program = argv?.[0];
    const problem = program === undefined ? null : programProblem(program);
    if (program === undefined || problem === null) continue;
    // programProblem names the path first ("/x does not exist"): say "it" instead.
    const why = problem.startsWith(`${program} `) ? `it ${problem.slice(program.length + 1)}` : problem;
    warnings.push(issue(`setting hooks.${event}`, "", "a program vipd can run", render(program),
      `expected a program vipd can run, received ${render(program)}: ${why}; each ${event} hook run fails (and is logged) until it can run`));
  }
  return warnings;
}
