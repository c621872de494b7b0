// Tributary: Event Hubs Capture files -> bronze, silver and gold Delta tables, on Azure Functions
// (Flex Consumption) with Durable Functions, and Databricks for large files. One module per
// concern; every principal signs in with Entra ID, and no key or connection string with a key
// exists anywhere in this template.
//
// Deploy: `azd up` (azure.yaml), or `az deployment group create -g <rg> -f infra/main.bicep
// -p infra/main.parameters.json`, publish the code, then deploy infra/eventing.bicep (the Event
// Grid subscription needs the published function). infra/README.md has the commands.
targetScope = 'resourceGroup'

@description('Environment name (azd AZURE_ENV_NAME): lowercase letters, digits and hyphens; every resource name derives from it.')
@minLength(3)
@maxLength(12)
param name string

@description('Region for every resource; it must offer Flex Consumption.')
param location string = resourceGroup().location

// -- landing -------------------------------------------------------------------------------------
@description('Container on the lake Capture writes to (CAPTURE_URI\'s container).')
param captureContainer string = 'capture'

@description('Blob-name prefix under the capture container whose files start batches, without slashes at either end; empty for the whole container.')
param capturePrefix string = ''

@description('Event hub producers send to.')
param eventHubName string = 'user-activity'

@description('Partitions of the event hub (fixed once created).')
@minValue(1)
@maxValue(32)
param eventHubPartitions int = 4

@description('Capture time window in seconds (60-900).')
@minValue(60)
@maxValue(900)
param captureIntervalSeconds int = 300

@description('Capture size window in bytes (10-500 MiB).')
@minValue(10485760)
@maxValue(524288000)
param captureSizeLimitBytes int = 314572800

@description('Principal id that may send to the event hub (Azure Event Hubs Data Sender); empty for none.')
param producerPrincipalId string = ''

@description('Type of producerPrincipalId.')
@allowed(['ServicePrincipal', 'User', 'Group'])
param producerPrincipalType string = 'ServicePrincipal'

// -- the app -------------------------------------------------------------------------------------
@description('Memory of one Function instance in MB (also INSTANCE_MEMORY_MB, which GB-seconds per batch are counted with).')
@allowed([512, 2048, 4096])
param instanceMemoryMB int = 2048

@description('Most Function instances the app scales out to.')
@minValue(1)
@maxValue(1000)
param maximumInstanceCount int = 40

@description('Zone-redundant Flex Consumption plan; false in a region without availability zones (then set storageSku to Standard_GRS).')
param zoneRedundant bool = true

@description('Replication of both storage accounts: geo-zone-redundant by default; Standard_GRS in a region without availability zones.')
@allowed(['Standard_GZRS', 'Standard_RAGZRS', 'Standard_GRS', 'Standard_RAGRS'])
param storageSku string = 'Standard_GZRS'

@description('Files above this size take the Databricks route (LARGE_FILE_BYTES); 464 MiB is what make bench derives for a 2,048 MB instance.')
param largeFileBytes int = 486539264

@description('Durable Functions task hub name (DURABLE_HUB_NAME).')
param durableHubName string = 'tributary'

@description('NCRONTAB schedule of the Delta maintenance timer (MAINTENANCE_SCHEDULE).')
param maintenanceSchedule string = '0 30 2 * * *'

@description('Age in hours of unreferenced Delta files that vacuum deletes (VACUUM_RETENTION_HOURS).')
param vacuumRetentionHours int = 168

// -- Databricks ----------------------------------------------------------------------------------
@description('Databricks pricing tier.')
@allowed(['premium', 'standard'])
param databricksSku string = 'premium'

@description('Make the app identity a Databricks workspace admin through Azure RBAC (Contributor on the workspace). Off by default: a workspace admin grants its entitlements instead (infra/README.md).')
param databricksWorkspaceAdmin bool = false

@description('Workspace folder the bundle deploys the job code to (DATABRICKS_JOB_ROOT).')
param databricksJobRoot string = '/Workspace/Shared/tributary'

@description('Cluster policy the job clusters use (DATABRICKS_CLUSTER_POLICY_ID); empty for none.')
param databricksClusterPolicyId string = ''

@description('Instance pool the job clusters draw from (DATABRICKS_INSTANCE_POOL_ID); empty for none.')
param databricksInstancePoolId string = ''

@description('Run large files on serverless jobs compute (DATABRICKS_SERVERLESS).')
param databricksServerless bool = false

@description('Databricks Runtime of the job clusters (DATABRICKS_SPARK_VERSION).')
param databricksSparkVersion string = '15.4.x-scala2.12'

@description('Node type of the job clusters (DATABRICKS_NODE_TYPE).')
param databricksNodeType string = 'Standard_DS3_v2'

@description('Workers per job cluster (DATABRICKS_WORKERS).')
@minValue(0)
param databricksWorkers int = 1

@description('DBUs a job cluster burns an hour, for the cost per batch (DATABRICKS_DBU_PER_HOUR; a decimal, as text).')
param databricksDbuPerHour string = '1.5'

// -- monitoring ----------------------------------------------------------------------------------
@description('Alert when more than this percent of the rows finished in the last hour were quarantined.')
@minValue(1)
@maxValue(100)
param quarantineRatioThresholdPercent int = 5

@description('Alert when Capture wrote events but no batch finished for this many minutes.')
@minValue(30)
@maxValue(1440)
param noBatchWindowMinutes int = 60

@description('E-mail address the alerts notify; empty for none.')
param alertEmail string = ''

@description('Days Log Analytics keeps data.')
@minValue(30)
@maxValue(730)
param logRetentionDays int = 30

var suffix = uniqueString(resourceGroup().id, name)
var compactName = replace(toLower(name), '-', '')
var tags = { 'azd-env-name': name, application: 'tributary' }

var lakeContainer = 'lake'
var quarantineContainer = 'quarantine'
var deadLetterContainer = 'deadletters'
var functionAppName = 'func-${name}-${suffix}'
var captureUri = empty(capturePrefix) ? 'az://${captureContainer}' : 'az://${captureContainer}/${capturePrefix}'

module identity 'app/identity.bicep' = {
  name: 'identity'
  params: {
    name: 'id-${name}-${suffix}'
    location: location
    tags: tags
  }
}

module monitoring 'app/monitoring.bicep' = {
  name: 'monitoring'
  params: {
    name: '${name}-${suffix}'
    location: location
    retentionInDays: logRetentionDays
    quarantineRatioThresholdPercent: quarantineRatioThresholdPercent
    noBatchWindowMinutes: noBatchWindowMinutes
    alertEmail: alertEmail
    tags: tags
  }
}

module lake 'app/lake.bicep' = {
  name: 'lake'
  params: {
    accountName: take('stl${compactName}${suffix}', 24)
    location: location
    replication: storageSku
    captureContainer: captureContainer
    lakeContainer: lakeContainer
    quarantineContainer: quarantineContainer
    deadLetterContainer: deadLetterContainer
    tags: tags
  }
}

module hostStorage 'app/host-storage.bicep' = {
  name: 'host-storage'
  params: {
    accountName: take('sth${compactName}${suffix}', 24)
    location: location
    replication: storageSku
    deploymentContainer: 'app-package'
    batchStateTable: 'batches'
    operationsTable: 'operations'
    tags: tags
  }
}

module eventHubs 'app/eventhubs.bicep' = {
  name: 'eventhubs'
  params: {
    namespaceName: 'evhns-${name}-${suffix}'
    hubName: eventHubName
    location: location
    partitionCount: eventHubPartitions
    captureIntervalSeconds: captureIntervalSeconds
    captureSizeLimitBytes: captureSizeLimitBytes
    lakeAccountId: lake.outputs.id
    captureContainer: captureContainer
    workspaceId: monitoring.outputs.workspaceId
    tags: tags
  }
}

module eventGrid 'app/eventgrid.bicep' = {
  name: 'eventgrid'
  params: {
    name: 'evgt-${name}-${suffix}'
    location: location
    lakeAccountId: lake.outputs.id
    workspaceId: monitoring.outputs.workspaceId
    tags: tags
  }
}

module databricks 'app/databricks.bicep' = {
  name: 'databricks'
  params: {
    name: 'dbw-${name}-${suffix}'
    location: location
    pricingTier: databricksSku
    tags: tags
  }
}

module function 'app/function.bicep' = {
  name: 'function'
  params: {
    name: functionAppName
    location: location
    identityId: identity.outputs.id
    identityClientId: identity.outputs.clientId
    hostStorageAccountName: hostStorage.outputs.AzureWebJobsStorage__accountName
    lakeStorageAccountName: lake.outputs.LAKE_STORAGE__accountName
    deploymentContainerUrl: hostStorage.outputs.deploymentContainerUrl
    applicationInsightsConnectionString: monitoring.outputs.APPLICATIONINSIGHTS_CONNECTION_STRING
    instanceMemoryMB: instanceMemoryMB
    maximumInstanceCount: maximumInstanceCount
    zoneRedundant: zoneRedundant
    tags: tags
    // Every setting in shared/settings.py SETTING_NAMES except the connection settings (which
    // carry keys): function.bicep adds their identity forms, telemetry and the process environment.
    appSettings: {
      LAKE_URI: lake.outputs.LAKE_URI
      CAPTURE_URI: captureUri
      QUARANTINE_URI: lake.outputs.QUARANTINE_URI
      BATCH_STATE_TABLE: hostStorage.outputs.BATCH_STATE_TABLE
      OPERATIONS_TABLE: hostStorage.outputs.OPERATIONS_TABLE
      LARGE_FILE_BYTES: string(largeFileBytes)
      CHUNK_ROWS: '16384'
      DELTA_COMMIT_RETRIES: '8'
      STORAGE_RETRY_SECONDS: '60'
      DURABLE_HUB_NAME: durableHubName
      BACKFILL_CONCURRENCY: '8'
      MAINTENANCE_SCHEDULE: maintenanceSchedule
      VACUUM_RETENTION_HOURS: string(vacuumRetentionHours)
      INSTANCE_MEMORY_MB: string(instanceMemoryMB)
      DATABRICKS_HOST: databricks.outputs.DATABRICKS_HOST
      DATABRICKS_CLIENT_ID: identity.outputs.clientId
      DATABRICKS_JOB_ROOT: databricksJobRoot
      DATABRICKS_CLUSTER_POLICY_ID: databricksClusterPolicyId
      DATABRICKS_INSTANCE_POOL_ID: databricksInstancePoolId
      DATABRICKS_SERVERLESS: string(databricksServerless)
      DATABRICKS_SPARK_VERSION: databricksSparkVersion
      DATABRICKS_NODE_TYPE: databricksNodeType
      DATABRICKS_WORKERS: string(databricksWorkers)
      DATABRICKS_POLL_SECONDS: '30'
      DATABRICKS_TIMEOUT_MINUTES: '120'
      DATABRICKS_DBU_PER_HOUR: databricksDbuPerHour
    }
  }
}

module rbac 'app/rbac.bicep' = {
  name: 'rbac'
  params: {
    appPrincipalId: identity.outputs.principalId
    lakeStorageAccountName: lake.outputs.LAKE_STORAGE__accountName
    captureContainer: captureContainer
    deadLetterContainer: deadLetterContainer
    hostStorageAccountName: hostStorage.outputs.AzureWebJobsStorage__accountName
    applicationInsightsName: monitoring.outputs.applicationInsightsName
    eventHubNamespaceName: eventHubs.outputs.namespaceName
    eventHubName: eventHubs.outputs.EVENTHUB_NAME
    capturePrincipalId: eventHubs.outputs.capturePrincipalId
    systemTopicPrincipalId: eventGrid.outputs.principalId
    producerPrincipalId: producerPrincipalId
    producerPrincipalType: producerPrincipalType
    databricksWorkspaceName: databricks.outputs.name
    databricksConnectorPrincipalId: databricks.outputs.accessConnectorPrincipalId
    databricksWorkspaceAdmin: databricksWorkspaceAdmin
  }
}

// Named for the settings they feed; azd keeps them in the environment for eventing.bicep.
output AZURE_FUNCTION_APP_NAME string = function.outputs.AZURE_FUNCTION_APP_NAME
output AzureWebJobsStorage__accountName string = hostStorage.outputs.AzureWebJobsStorage__accountName
output LAKE_STORAGE__accountName string = lake.outputs.LAKE_STORAGE__accountName
output CAPTURE_URI string = captureUri
output CAPTURE_CONTAINER string = captureContainer
output CAPTURE_PREFIX string = capturePrefix
output DEAD_LETTER_CONTAINER string = deadLetterContainer
output EVENT_GRID_SYSTEM_TOPIC string = eventGrid.outputs.EVENT_GRID_SYSTEM_TOPIC
output EVENTHUB_FULLY_QUALIFIED_NAMESPACE string = eventHubs.outputs.EVENTHUB_FULLY_QUALIFIED_NAMESPACE
output EVENTHUB_NAME string = eventHubs.outputs.EVENTHUB_NAME
output DATABRICKS_HOST string = databricks.outputs.DATABRICKS_HOST
output DATABRICKS_CLIENT_ID string = identity.outputs.clientId
output DATABRICKS_ACCESS_CONNECTOR_ID string = databricks.outputs.accessConnectorId
output DATABRICKS_AZURE_RESOURCE_ID string = databricks.outputs.id
output APPLICATIONINSIGHTS_CONNECTION_STRING string = monitoring.outputs.APPLICATIONINSIGHTS_CONNECTION_STRING
