// The pipeline's Distributed Map over shards: reads the plan's items from S3 (ItemReader, a JSON array),
// exports child results to S3 (ResultWriter) instead of returning them inline, fails past an explicit
// tolerated failure percentage, and grants the state machine S3 access to the scratch prefix only.
// https://docs.aws.amazon.com/step-functions/latest/dg/state-map-distributed.html
import { Arn, ArnFormat, Aws } from 'aws-cdk-lib';
import * as iam from 'aws-cdk-lib/aws-iam';
import type * as s3 from 'aws-cdk-lib/aws-s3';
import * as sfn from 'aws-cdk-lib/aws-stepfunctions';
import { STEPFUNCTIONS_USE_DISTRIBUTED_MAP_RESULT_WRITER_V2 } from 'aws-cdk-lib/cx-api';
import type { Construct } from 'constructs';

export interface ShardMapProps {
  readonly bucket: s3.IBucket;
  /** Key prefix (e.g. `runs/`) that holds every items file and result; the state machine's S3 grants stop there. */
  readonly scratchPrefix: string;
  /** JSONPath, in the state input, of the items file's key (a JSON array, one child execution per element). */
  readonly itemsKeyPath: string;
  /** JSONPath, in the state input, of the prefix ResultWriter exports under (it adds `{mapRunId}/manifest.json`). */
  readonly resultsPrefixPath: string;
  /** Where the Map's output ({ MapRunArn, ResultWriterDetails }) goes in the state. */
  readonly resultPath: string;
  readonly maxConcurrency: number;
  /** Percentage of failed child executions the Map Run tolerates (0-100); always rendered, 0 included. */
  readonly toleratedFailurePercentage: number;
  readonly comment?: string;
}

/** GetObject on the scratch prefix only (CDK's S3JsonItemReader would grant the whole bucket). */
class ScratchJsonItemReader extends sfn.S3JsonItemReader {
  private readonly objectsArn: string;
  constructor(props: sfn.S3FileItemReaderProps, objectsArn: string) {
    super(props);
    this.objectsArn = objectsArn;
  }
  override providePolicyStatements(): iam.PolicyStatement[] {
    return [new iam.PolicyStatement({ actions: ['s3:GetObject'], resources: [this.objectsArn] })];
  }
}

/** ResultWriter's actions (docs: "IAM policies for ResultWriter") on the scratch prefix only. */
class ScratchResultWriter extends sfn.ResultWriterV2 {
  private readonly objectsArn: string;
  constructor(props: sfn.ResultWriterV2Props, objectsArn: string) {
    super(props);
    this.objectsArn = objectsArn;
  }
  override providePolicyStatements(): iam.PolicyStatement[] {
    return [new iam.PolicyStatement({ actions: ['s3:PutObject', 's3:GetObject', 's3:ListMultipartUploadParts', 's3:AbortMultipartUpload'], resources: [this.objectsArn] })];
  }
}

/** A Distributed Map whose tolerated failure percentage is in the definition even when it is 0 (CDK drops a 0). */
class ExplicitToleranceMap extends sfn.DistributedMap {
  private readonly tolerance: number;
  constructor(scope: Construct, id: string, props: sfn.DistributedMapProps, tolerance: number) {
    super(scope, id, props);
    this.tolerance = tolerance;
    // ResultWriterV2 (Parameters with Prefix.$) is behind a feature flag; scope it to this state.
    this.node.setContext(STEPFUNCTIONS_USE_DISTRIBUTED_MAP_RESULT_WRITER_V2, true);
  }
  override toStateJson(queryLanguage?: sfn.QueryLanguage): object {
    return { ...super.toStateJson(queryLanguage), ToleratedFailurePercentage: this.tolerance };
  }
}

/** The shards Map: items from S3, results to S3, explicit failure tolerance. */
export function shardMap(scope: Construct, id: string, props: ShardMapProps): sfn.DistributedMap {
  if (!(props.toleratedFailurePercentage >= 0 && props.toleratedFailurePercentage <= 100)) {
    throw new RangeError(`toleratedFailurePercentage must be between 0 and 100, got ${props.toleratedFailurePercentage}`);
  }
  // Like CDK's own readers and writers: arn:<partition>:s3:::<bucket>/<prefix>*.
  const objectsArn = Arn.format({ region: '', account: '', partition: Aws.PARTITION, service: 's3', resource: props.bucket.bucketName, resourceName: `${props.scratchPrefix}*`, arnFormat: ArnFormat.SLASH_RESOURCE_NAME });
  return new ExplicitToleranceMap(
    scope,
    id,
    {
      comment: props.comment,
      itemReader: new ScratchJsonItemReader({ bucket: props.bucket, key: sfn.JsonPath.stringAt(props.itemsKeyPath) }, objectsArn),
      resultWriterV2: new ScratchResultWriter({ bucket: props.bucket, prefix: sfn.JsonPath.stringAt(props.resultsPrefixPath) }, objectsArn),
      maxConcurrency: props.maxConcurrency,
      mapExecutionType: sfn.StateMachineType.STANDARD,
      resultPath: props.resultPath,
    },
    props.toleratedFailurePercentage,
  );
}
