CREATE TABLE "billing_accounts" (
	"organization_id" text PRIMARY KEY NOT NULL,
	"plan" text NOT NULL,
	"billing_name" text,
	"billing_email" text,
	"billing_address" text[] DEFAULT '{}'::text[] NOT NULL,
	"tax_id" text,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	"updated_at" timestamp with time zone DEFAULT now() NOT NULL
);
--> statement-breakpoint
CREATE TABLE "credit_draws" (
	"grant_id" text NOT NULL,
	"organization_id" text NOT NULL,
	"month_start" timestamp with time zone NOT NULL,
	"amount_nano_usd" bigint NOT NULL,
	CONSTRAINT "credit_draws_grant_id_month_start_pk" PRIMARY KEY("grant_id","month_start")
);
--> statement-breakpoint
CREATE TABLE "credit_grants" (
	"id" text PRIMARY KEY NOT NULL,
	"organization_id" text NOT NULL,
	"kind" text NOT NULL,
	"amount_nano_usd" bigint NOT NULL,
	"remaining_nano_usd" bigint NOT NULL,
	"note" text,
	"payment_id" text,
	"created_by" text NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	"expires_at" timestamp with time zone,
	"voided_at" timestamp with time zone
);
--> statement-breakpoint
CREATE TABLE "invoice_lines" (
	"invoice_id" text NOT NULL,
	"position" integer NOT NULL,
	"project_id" text NOT NULL,
	"model" text NOT NULL,
	"item" text NOT NULL,
	"quantity" bigint NOT NULL,
	"quantity_unit" text NOT NULL,
	"amount_cents" bigint NOT NULL,
	CONSTRAINT "invoice_lines_invoice_id_position_pk" PRIMARY KEY("invoice_id","position")
);
--> statement-breakpoint
CREATE TABLE "invoices" (
	"id" text PRIMARY KEY NOT NULL,
	"organization_id" text NOT NULL,
	"number" text NOT NULL,
	"period_start" timestamp with time zone NOT NULL,
	"period_end" timestamp with time zone NOT NULL,
	"status" text NOT NULL,
	"currency" text DEFAULT 'USD' NOT NULL,
	"subtotal_cents" bigint NOT NULL,
	"credits_cents" bigint NOT NULL,
	"total_cents" bigint NOT NULL,
	"bill_to" jsonb NOT NULL,
	"issued_at" timestamp with time zone DEFAULT now() NOT NULL,
	"due_at" timestamp with time zone,
	"paid_at" timestamp with time zone,
	"voided_at" timestamp with time zone
);
--> statement-breakpoint
CREATE TABLE "model_prices" (
	"id" text PRIMARY KEY NOT NULL,
	"model" text NOT NULL,
	"input_usd_per_1m" numeric NOT NULL,
	"cached_input_usd_per_1m" numeric,
	"output_usd_per_1m" numeric NOT NULL,
	"unit_usd" numeric,
	"effective_from" timestamp with time zone NOT NULL,
	"created_by" text NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL
);
--> statement-breakpoint
CREATE TABLE "payments" (
	"id" text PRIMARY KEY NOT NULL,
	"organization_id" text NOT NULL,
	"invoice_id" text,
	"amount_cents" bigint NOT NULL,
	"currency" text DEFAULT 'USD' NOT NULL,
	"provider" text NOT NULL,
	"reference" text,
	"method" text,
	"status" text NOT NULL,
	"created_by" text NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL
);
--> statement-breakpoint
CREATE TABLE "rollup_dirty" (
	"organization_id" text NOT NULL,
	"hour" timestamp with time zone NOT NULL,
	"version" bigint DEFAULT 1 NOT NULL,
	CONSTRAINT "rollup_dirty_organization_id_hour_pk" PRIMARY KEY("organization_id","hour")
);
--> statement-breakpoint
CREATE TABLE "usage_rollups" (
	"width" text NOT NULL,
	"bucket_start" timestamp with time zone NOT NULL,
	"organization_id" text NOT NULL,
	"project_id" text NOT NULL,
	"api_key_id" text NOT NULL,
	"user_id" text NOT NULL,
	"model" text NOT NULL,
	"kind" text NOT NULL,
	"requests" bigint NOT NULL,
	"errors" bigint NOT NULL,
	"input_tokens" bigint NOT NULL,
	"cached_tokens" bigint NOT NULL,
	"output_tokens" bigint NOT NULL,
	"units" bigint NOT NULL,
	"cost_input_nano_usd" bigint NOT NULL,
	"cost_cached_nano_usd" bigint NOT NULL,
	"cost_output_nano_usd" bigint NOT NULL,
	"cost_units_nano_usd" bigint NOT NULL,
	CONSTRAINT "usage_rollups_width_organization_id_bucket_start_project_id_api_key_id_user_id_model_kind_pk" PRIMARY KEY("width","organization_id","bucket_start","project_id","api_key_id","user_id","model","kind")
);
--> statement-breakpoint
DROP INDEX "usage_events_key_time";--> statement-breakpoint
DROP INDEX "usage_events_project_time";--> statement-breakpoint
ALTER TABLE "organizations" ADD COLUMN "is_operator" boolean DEFAULT false NOT NULL;--> statement-breakpoint
ALTER TABLE "usage_events" ADD COLUMN "kind" text DEFAULT 'other' NOT NULL;--> statement-breakpoint
ALTER TABLE "usage_events" ADD COLUMN "units" bigint DEFAULT 0 NOT NULL;--> statement-breakpoint
ALTER TABLE "usage_events" ADD COLUMN "cost_input_nano_usd" bigint DEFAULT 0 NOT NULL;--> statement-breakpoint
ALTER TABLE "usage_events" ADD COLUMN "cost_cached_nano_usd" bigint DEFAULT 0 NOT NULL;--> statement-breakpoint
ALTER TABLE "usage_events" ADD COLUMN "cost_output_nano_usd" bigint DEFAULT 0 NOT NULL;--> statement-breakpoint
ALTER TABLE "usage_events" ADD COLUMN "cost_units_nano_usd" bigint DEFAULT 0 NOT NULL;--> statement-breakpoint
ALTER TABLE "billing_accounts" ADD CONSTRAINT "billing_accounts_organization_id_organizations_id_fk" FOREIGN KEY ("organization_id") REFERENCES "public"."organizations"("id") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "credit_draws" ADD CONSTRAINT "credit_draws_grant_id_credit_grants_id_fk" FOREIGN KEY ("grant_id") REFERENCES "public"."credit_grants"("id") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "credit_grants" ADD CONSTRAINT "credit_grants_organization_id_organizations_id_fk" FOREIGN KEY ("organization_id") REFERENCES "public"."organizations"("id") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "invoice_lines" ADD CONSTRAINT "invoice_lines_invoice_id_invoices_id_fk" FOREIGN KEY ("invoice_id") REFERENCES "public"."invoices"("id") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "invoices" ADD CONSTRAINT "invoices_organization_id_organizations_id_fk" FOREIGN KEY ("organization_id") REFERENCES "public"."organizations"("id") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "payments" ADD CONSTRAINT "payments_organization_id_organizations_id_fk" FOREIGN KEY ("organization_id") REFERENCES "public"."organizations"("id") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "payments" ADD CONSTRAINT "payments_invoice_id_invoices_id_fk" FOREIGN KEY ("invoice_id") REFERENCES "public"."invoices"("id") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
CREATE INDEX "credit_draws_org_month" ON "credit_draws" USING btree ("organization_id","month_start");--> statement-breakpoint
CREATE INDEX "credit_grants_org" ON "credit_grants" USING btree ("organization_id","created_at");--> statement-breakpoint
CREATE UNIQUE INDEX "invoices_number" ON "invoices" USING btree ("number");--> statement-breakpoint
CREATE UNIQUE INDEX "invoices_org_period_live" ON "invoices" USING btree ("organization_id","period_start") WHERE status <> 'void';--> statement-breakpoint
CREATE INDEX "model_prices_model_from" ON "model_prices" USING btree ("model","effective_from");--> statement-breakpoint
CREATE INDEX "payments_org_created" ON "payments" USING btree ("organization_id","created_at","id");--> statement-breakpoint
-- Room in each page for updated roll-up rows: their sums change, no indexed column does, so
-- updates can stay on the page (HOT) without touching the index.
ALTER TABLE "usage_rollups" SET (fillfactor = 70);--> statement-breakpoint
-- The instance's first organization is its operator's (set by `keyport init` from now on).
UPDATE "organizations" SET "is_operator" = true WHERE "id" = (SELECT "id" FROM "organizations" ORDER BY "created_at", "id" LIMIT 1);
