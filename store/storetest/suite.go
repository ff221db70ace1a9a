// Package storetest is the contract every storage backend passes: each
// operation's results and errors, tenant isolation, concurrency, and what
// survives a restart. A backend's tests call Run with a Harness.
package storetest

import (
	"testing"

	"github.com/postern/postern/store"
)

// Harness opens backends for the suite.
type Harness interface {
	// Open returns an empty backend with the given caps, closed (and
	// checked, where the backend can check itself) when t ends.
	Open(t *testing.T, caps store.Caps) store.Backend
	// Reopen closes b and opens what it stored again, as a restart would.
	Reopen(t *testing.T, b store.Backend) store.Backend
}

// Run runs the whole contract against h's backends, one subtest per
// expectation.
func Run(t *testing.T, h Harness) {
	for _, c := range contract {
		t.Run(c.name, func(t *testing.T) { c.run(t, h) })
	}
}

var contract = []struct {
	name string
	run  func(*testing.T, Harness)
}{
	{"OperatorAccount", testOperatorAccount},
	{"ServerDefaultsAndUpdate", testServerDefaultsAndUpdate},
	{"ListServers", testListServers},
	{"DeleteServer", testDeleteServer},
	{"ServerTokens", testServerTokens},
	{"AccountTokens", testAccountTokens},
	{"Accounts", testAccounts},
	{"ServerReadsSeeEveryChange", testServerReadsSeeEveryChange},
	{"DomainReadsSeeEveryChange", testDomainReadsSeeEveryChange},
	{"ClaimRotatesAcrossServers", testClaimRotatesAcrossServers},
	{"ClaimRespectsAllowAndDueTime", testClaimRespectsAllowAndDueTime},
	{"ClaimTakeSkipsRefusedEntries", testClaimTakeSkipsRefusedEntries},
	{"LeasesComeBack", testLeasesComeBack},
	{"RecordAttempt", testRecordAttempt},
	{"MessageStatuses", testMessageStatuses},
	{"Domains", testDomains},
	{"NextDue", testNextDue},
	{"EnqueueSandboxRecordsDelivered", testEnqueueSandboxRecordsDelivered},
	{"DomainClaims", testDomainClaims},
	{"DomainModifyAndDelete", testDomainModifyAndDelete},
	{"QueuedSignatureBy", testQueuedSignatureBy},
	{"SentSinceAndSentOn", testSentSinceAndSentOn},
	{"QueueStats", testQueueStats},
	{"DeferReturnsEntryUncounted", testDeferReturnsEntryUncounted},
	{"PurgeExpired", testPurgeExpired},
	{"PurgeExpiredStopsWithItsContext", testPurgeExpiredStopsWithItsContext},
	{"SearchMessages", testSearchMessages},
	{"StatsAndBounces", testStatsAndBounces},
	{"StatsTagsPerDayCapped", testStatsTagsPerDayCapped},
	{"InitializeOnce", testInitializeOnce},
	{"EnqueueAndRead", testEnqueueAndRead},
	{"MessageOfAnotherServerIsNotFound", testMessageOfAnotherServerIsNotFound},
	{"DuplicateServerName", testDuplicateServerName},
	{"EnqueueUnknownServer", testEnqueueUnknownServer},
	{"BatchIsolatesAFailingWrite", testBatchIsolatesAFailingWrite},
	{"ClosedStoreRefusesWrites", testClosedStoreRefusesWrites},
	{"NewServerKeepsDefaultRetention", testNewServerKeepsDefaultRetention},
	{"CapsRefuseCreationPastTheLimit", testCapsRefuseCreationPastTheLimit},
	{"EnqueueHoldsLimits", testEnqueueHoldsLimits},
	{"STSPolicies", testSTSPolicies},
	{"TLSReports", testTLSReports},
	{"Webhooks", testWebhooks},
	{"WebhookPausedAfterADayOfFailures", testWebhookPausedAfterADayOfFailures},
	{"WebhookLeasesComeBack", testWebhookLeasesComeBack},
	{"Streams", testStreams},
	{"DMARCReports", testDMARCReports},
	{"RecordLateBounce", testRecordLateBounce},
	{"Users", testUsers},
	{"Marks", testMarks},
	{"Sessions", testSessions},
	{"UpdateAccount", testUpdateAccount},
	{"TransferServer", testTransferServer},
	{"TransferServerCaps", testTransferServerCaps},
}
