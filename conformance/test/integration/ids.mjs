// The ids of every check the kit runs for both modes, in report order.
import { allChecks, ECHO_CHECK } from "../../lib/checks.js";

export const ALL_IDS = [...allChecks(["token", "code"]).map((c) => c.id), ECHO_CHECK.id];
export const TIMED = ["session.idle", "session.max-lifetime"];
export const CORS = ["cors.preflight"];
