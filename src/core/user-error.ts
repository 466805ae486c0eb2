/** An error whose message is meant for the person at the terminal: printed without a stack trace. */
export class UserError extends Error {}
