/**
 * Who may make this gateway request: a project or service-account key (Bearer only), from an
 * allowed address, with the permission the endpoint needs, for a model on its allow-list, and
 * agreeing with any OpenAI-Organization / OpenAI-Project header.
 */
import type { FastifyRequest } from 'fastify';
import { bearerToken, denialToError } from '../api/http/denials.ts';
import { ApiError, badRequest } from '../core/errors.ts';
import type { RouteRule } from '../core/openai-routes.ts';
import { permits, requiredScope } from '../core/permissions.ts';
import { hasUnstorableText } from '../core/storable-text.ts';
import type { KeyVerifier, VerifyResult } from '../keys/verify-key.ts';

export type GatewayPrincipal = Extract<VerifyResult, { valid: true }>;

export async function authenticate(
  request: FastifyRequest,
  verifier: KeyVerifier,
): Promise<GatewayPrincipal> {
  const secret = bearerToken(request.headers.authorization);
  const result = await verifier.verify(secret, { ip: request.ip });
  if (!result.valid) throw denialToError(result.code, result.redactedValue);
  if (result.key.kind === 'admin') {
    throw new ApiError(
      'missing_scope',
      'Admin keys manage the organization and cannot call the model API. Use a project or service-account key.',
    );
  }
  const organization = header(request, 'openai-organization');
  if (organization !== undefined && organization !== result.organization.id) {
    throw new ApiError(
      'mismatched_organization',
      `OpenAI-Organization header should match organization for API key (${result.organization.id}).`,
    );
  }
  const project = header(request, 'openai-project');
  if (project !== undefined && project !== result.project?.id) {
    throw new ApiError(
      'mismatched_project',
      `OpenAI-Project header should match project for API key (${result.project?.id}).`,
    );
  }
  return result;
}

export function authorize(principal: GatewayPrincipal, rule: RouteRule): void {
  if (permits(principal.key.permissions, rule.resource, rule.access)) return;
  const scope = requiredScope(rule.resource, rule.access);
  throw new ApiError(
    'missing_scope',
    `You have insufficient permissions for this operation. Missing scopes: ${scope}. ` +
      "Check that your API key's permissions include it (restricted and read-only keys are limited).",
  );
}

export function modelNotFound(model: string): ApiError {
  return new ApiError(
    'model_not_found',
    `The model \`${model}\` does not exist or you do not have access to it.`,
    'model',
  );
}

/** Control characters: no model is named so. */
// biome-ignore lint/suspicious/noControlCharactersInRegex: control characters are what this must find
const CONTROL_CHARACTER = /[\u0000-\u001f\u007f]/;
const MAX_MODEL_NAME = 256;

export function checkModel(principal: GatewayPrincipal, model: string): void {
  if (model.length > MAX_MODEL_NAME || CONTROL_CHARACTER.test(model) || hasUnstorableText(model)) {
    throw badRequest(
      `The model name is not valid: at most ${MAX_MODEL_NAME} characters, and no control characters.`,
      'model',
    );
  }
  if (!principal.key.allowsModel(model)) throw modelNotFound(model);
}

function header(request: FastifyRequest, name: string): string | undefined {
  const value = request.headers[name];
  const text = Array.isArray(value) ? value[0] : value;
  return text === undefined || text === '' ? undefined : text;
}
