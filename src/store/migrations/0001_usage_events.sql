CREATE TABLE "usage_events" (
	"request_id" text PRIMARY KEY NOT NULL,
	"created_at" timestamp with time zone NOT NULL,
	"organization_id" text NOT NULL,
	"project_id" text,
	"api_key_id" text NOT NULL,
	"user_id" text,
	"service_account_id" text,
	"method" text NOT NULL,
	"endpoint" text NOT NULL,
	"model" text,
	"upstream" text,
	"input_tokens" integer DEFAULT 0 NOT NULL,
	"cached_tokens" integer DEFAULT 0 NOT NULL,
	"output_tokens" integer DEFAULT 0 NOT NULL,
	"status" integer NOT NULL,
	"latency_ms" integer NOT NULL,
	"client_ip" text,
	"streamed" boolean DEFAULT false NOT NULL,
	"estimated" boolean DEFAULT false NOT NULL
);
--> statement-breakpoint
CREATE INDEX "usage_events_org_time" ON "usage_events" USING btree ("organization_id","created_at");--> statement-breakpoint
CREATE INDEX "usage_events_key_time" ON "usage_events" USING btree ("api_key_id","created_at");