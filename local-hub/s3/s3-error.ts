// S3 protocol errors of the hub's object store: the HTTP status and the S3 error code that a client's SDK turns
// into an exception name (NoSuchKey, PreconditionFailed, ...). https://docs.aws.amazon.com/AmazonS3/latest/API/ErrorResponses.html

/** An error the S3 store answers with, as `<Error><Code>code</Code><Message>message</Message>...</Error>`. */
export class S3Error extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    /** Extra elements of the error document (Key, BucketName, ...), as S3 sends them. */
    readonly details: Readonly<Record<string, string>> = {},
  ) {
    super(message);
    this.name = 'S3Error';
  }
}

/** The errors the store raises in more than one place, with S3's own wording. */
export const S3Errors = {
  noSuchBucket: (bucket: string) => new S3Error(404, 'NoSuchBucket', 'The specified bucket does not exist', { BucketName: bucket }),
  noSuchKey: (key: string) => new S3Error(404, 'NoSuchKey', 'The specified key does not exist.', { Key: key }),
  noSuchUpload: (uploadId: string) =>
    new S3Error(404, 'NoSuchUpload', 'The specified upload does not exist. The upload ID may be invalid, or the upload may have been aborted or completed.', { UploadId: uploadId }),
  preconditionFailed: (condition: string) =>
    new S3Error(412, 'PreconditionFailed', 'At least one of the pre-conditions you specified did not hold', { Condition: condition }),
  notImplemented: (what: string) => new S3Error(501, 'NotImplemented', `${what} is not implemented by the local hub's S3 store`),
  invalidArgument: (message: string) => new S3Error(400, 'InvalidArgument', message),
  invalidRequest: (message: string) => new S3Error(400, 'InvalidRequest', message),
  malformedXml: () => new S3Error(400, 'MalformedXML', 'The XML you provided was not well-formed or did not validate against our published schema'),
} as const;
