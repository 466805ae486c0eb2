/** What a first run creates, unless told otherwise (kept apart so the CLI can show it without loading the database). */
export interface BootstrapInput {
  organizationName: string;
  ownerEmail: string;
  ownerName: string;
  projectName: string;
}

export const DEFAULT_BOOTSTRAP: BootstrapInput = {
  organizationName: 'My organization',
  ownerEmail: 'owner@localhost',
  ownerName: 'Owner',
  projectName: 'Default project',
};
