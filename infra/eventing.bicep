// The Event Grid subscription that starts batches: BlobCreated events for committed, non-empty
// Capture files -> the on_capture_event function. Deployed after the code is published, because
// an AzureFunction endpoint must name a function that already exists (azure.yaml's postdeploy
// hook runs it; the README gives the command). Every value comes from main.bicep's outputs.
targetScope = 'resourceGroup'

@description('The lake account\'s system topic (main.bicep output EVENT_GRID_SYSTEM_TOPIC).')
param systemTopicName string

@description('Function app hosting the trigger (main.bicep output AZURE_FUNCTION_APP_NAME).')
param functionAppName string

@description('Lake storage account: the dead-letter destination (main.bicep output LAKE_STORAGE__accountName).')
param lakeStorageAccountName string

@description('Container Capture writes to (main.bicep output CAPTURE_CONTAINER).')
param captureContainer string

@description('Blob-name prefix under the container, without slashes at either end; empty for the whole container (main.bicep output CAPTURE_PREFIX).')
param capturePrefix string = ''

@description('Container undeliverable events are dead-lettered to (main.bicep output DEAD_LETTER_CONTAINER).')
param deadLetterContainer string

@description('Event Grid-triggered function (shared.events.EVENT_FUNCTION).')
param functionName string = 'on_capture_event'

@description('Delivery attempts before an event is dead-lettered.')
@minValue(1)
@maxValue(30)
param maxDeliveryAttempts int = 30

@description('Minutes Event Grid keeps retrying an event before it is dead-lettered.')
@minValue(1)
@maxValue(1440)
param eventTimeToLiveInMinutes int = 1440

// data.api values that commit a blob's content: shared.events.COMMITTED_APIS (a test holds them equal).
// CreateFile is ADLS Gen2 creating an empty file that a later FlushWithClose commits.
var committedApis = ['CopyBlob', 'FlushWithClose', 'PutBlob', 'PutBlockList', 'SftpCommit']

// A folder prefix ends with '/', so prefix 'ns' does not also match 'ns-old/...'.
var captureFolder = empty(capturePrefix) ? '' : '${capturePrefix}/'
var captureSubject = '/blobServices/default/containers/${captureContainer}/blobs/${captureFolder}'

resource topic 'Microsoft.EventGrid/systemTopics@2022-06-15' existing = {
  name: systemTopicName
}

resource site 'Microsoft.Web/sites@2024-04-01' existing = {
  name: functionAppName
}

resource lake 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: lakeStorageAccountName
}

resource subscription 'Microsoft.EventGrid/systemTopics/eventSubscriptions@2022-06-15' = {
  parent: topic
  name: 'capture-files'
  properties: {
    eventDeliverySchema: 'EventGridSchema'
    // Event Grid fetches the function's key through Resource Manager: no key is stored here.
    destination: {
      endpointType: 'AzureFunction'
      properties: {
        resourceId: '${site.id}/functions/${functionName}'
        maxEventsPerBatch: 1
        preferredBatchSizeInKilobytes: 64
      }
    }
    filter: {
      includedEventTypes: ['Microsoft.Storage.BlobCreated']
      subjectBeginsWith: captureSubject
      // Blob names are case-sensitive; so is the prefix the trigger checks.
      isSubjectCaseSensitive: true
      advancedFilters: [
        { operatorType: 'StringIn', key: 'data.api', values: committedApis }
        // Capture skips empty windows; a zero-length blob holds no rows to ingest.
        { operatorType: 'NumberGreaterThan', key: 'data.contentLength', value: 0 }
      ]
    }
    retryPolicy: {
      maxDeliveryAttempts: maxDeliveryAttempts
      eventTimeToLiveInMinutes: eventTimeToLiveInMinutes
    }
    // Dead-lettered with the topic's own identity: no storage key or SAS.
    deadLetterWithResourceIdentity: {
      identity: { type: 'SystemAssigned' }
      deadLetterDestination: {
        endpointType: 'StorageBlob'
        properties: {
          resourceId: lake.id
          blobContainerName: deadLetterContainer
        }
      }
    }
  }
}

output subscriptionId string = subscription.id
