/**
 * How long the audio of a transcription or translation upload is, read from the file itself
 * (music-metadata: MP3, MP4/M4A, WAV, WebM, Ogg, FLAC, …). Billing falls back to it when the
 * upstream does not say: a transcript asked for as plain text (or JSON without a duration) would
 * otherwise cost nothing.
 */
import { parseBlob } from 'music-metadata';

/** Seconds of audio in the multipart form's `file`, or undefined when it cannot be told. */
export async function uploadedAudioSeconds(raw: Buffer, contentType: string): Promise<number | undefined> {
  if (!contentType.startsWith('multipart/form-data')) return undefined;
  try {
    const form = await new Response(raw, { headers: { 'content-type': contentType } }).formData();
    const file = form.get('file');
    if (!(file instanceof Blob)) return undefined;
    // `duration: true` scans a file without a duration header (a VBR MP3 without its Xing frame).
    const { format } = await parseBlob(file, { duration: true, skipCovers: true });
    const seconds = format.duration;
    return typeof seconds === 'number' && Number.isFinite(seconds) && seconds > 0 ? seconds : undefined;
  } catch {
    return undefined; // not audio it can read: the upstream has answered, so nothing else is billed
  }
}
