// BlobCreated events for committed Capture files -> the Event Grid-triggered function.
@description('System topic name.')
param name string

@description('Region.')
param location string

@description('Storage account Capture writes to.')
param storageAccountName string

@description('Function app hosting the trigger.')
param functionAppName string

@description('Event Grid-triggered function (shared.events.EVENT_FUNCTION).')
param functionName string

@description('Container Capture writes to.')
param captureContainer string

@description('Prefix under the container (empty for all).')
param capturePrefix string

resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: storageAccountName
}

resource site 'Microsoft.Web/sites@2024-04-01' existing = {
  name: functionAppName
}

resource topic 'Microsoft.EventGrid/systemTopics@2024-06-01-preview' = {
  name: name
  location: location
  properties: {
    source: storage.id
    topicType: 'Microsoft.Storage.StorageAccounts'
  }
}

resource subscription 'Microsoft.EventGrid/systemTopics/eventSubscriptions@2024-06-01-preview' = {
  parent: topic
  name: 'capture-files'
  properties: {
    eventDeliverySchema: 'EventGridSchema'
    destination: {
      endpointType: 'AzureFunction'
      properties: {
        resourceId: '${site.id}/functions/${functionName}'
        maxEventsPerBatch: 1
      }
    }
    filter: {
      includedEventTypes: ['Microsoft.Storage.BlobCreated']
      subjectBeginsWith: '/blobServices/default/containers/${captureContainer}/blobs/${capturePrefix}'
      // The function also checks data.api; this keeps CreateFile and friends off the wire.
      advancedFilters: [
        {
          operatorType: 'StringIn'
          key: 'data.api'
          values: ['PutBlob', 'PutBlockList', 'CopyBlob', 'FlushWithClose', 'SftpCommit']
        }
      ]
    }
    retryPolicy: { maxDeliveryAttempts: 30, eventTimeToLiveInMinutes: 1440 }
  }
}
