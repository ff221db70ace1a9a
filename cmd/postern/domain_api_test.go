package main

import "testing"

// The domain commands over the API print, byte for byte, these lines and
// tables of the API's answers, and with -json the answers as Postern
// encodes them.
func TestDomainOverAPIOutputs(t *testing.T) {
	t.Parallel()
	verified := `{"ID": 3, "Name": "mail.example.com", "DKIMVerified": true, "DKIMHost": "pstrn-rsa-20240611-ab12._domainkey.mail.example.com",
		"DKIMTextValue": "v=DKIM1; k=rsa; p=RSA3", "DKIMRevokedHost": "pstrn-rsa-20240101-0f0f._domainkey.mail.example.com",
		"DKIMRevokedTextValue": "v=DKIM1; k=rsa; p=OLD", "SafeToRemoveRevokedKeyFromDNS": true, "DKIMUpdateStatus": "Verified",
		"DKIMRecords": [{"Algorithm": "ed25519", "Host": "pstrn-ed-20240611-ab12._domainkey.mail.example.com", "TextValue": "v=DKIM1; k=ed25519; p=ED3"},
		{"Algorithm": "rsa", "Host": "pstrn-rsa-20240611-ab12._domainkey.mail.example.com", "TextValue": "v=DKIM1; k=rsa; p=RSA3"}]}`
	added := `{"ID": 4, "Name": "b.example", "DKIMPendingHost": "pstrn-rsa-20240611-cd34._domainkey.b.example", "DKIMPendingTextValue": "v=DKIM1; k=rsa; p=RSA4",
		"DKIMUpdateStatus": "Pending", "ReturnPathDomain": "", "SPFHost": "b.example", "SPFTextValue": "v=spf1 a mx ~all",
		"DKIMRecords": [{"Algorithm": "ed25519", "Host": "pstrn-ed-20240611-cd34._domainkey.b.example", "TextValue": "v=DKIM1; k=ed25519; p=ED4"},
		{"Algorithm": "rsa", "Host": "pstrn-rsa-20240611-cd34._domainkey.b.example", "TextValue": "v=DKIM1; k=rsa; p=RSA4"}]}`
	rotating := `{"ID": 5, "Name": "rotating.example", "DKIMVerified": true, "DKIMHost": "pstrn-rsa-20240101-1111._domainkey.rotating.example",
		"DKIMTextValue": "v=DKIM1; k=rsa; p=RSA5", "DKIMPendingHost": "pstrn-rsa-20240611-2222._domainkey.rotating.example",
		"DKIMPendingTextValue": "v=DKIM1; k=rsa; p=NEW5", "DKIMRevokedHost": "pstrn-rsa-20230101-0000._domainkey.rotating.example",
		"DKIMUpdateStatus": "Pending",
		"DKIMRecords": [{"Algorithm": "ed25519", "Host": "pstrn-ed-20240101-1111._domainkey.rotating.example", "TextValue": "v=DKIM1; k=ed25519; p=ED5"},
		{"Algorithm": "rsa", "Host": "pstrn-rsa-20240101-1111._domainkey.rotating.example", "TextValue": "v=DKIM1; k=rsa; p=RSA5"},
		{"Algorithm": "ed25519", "Host": "pstrn-ed-20240611-2222._domainkey.rotating.example", "TextValue": "v=DKIM1; k=ed25519; p=NEWED5"},
		{"Algorithm": "rsa", "Host": "pstrn-rsa-20240611-2222._domainkey.rotating.example", "TextValue": "v=DKIM1; k=rsa; p=NEW5"}]}`
	url := cannedAPI(t, map[string]string{
		"GET /domains?count=500&offset=0": `{"TotalCount": 3, "Domains": [{"ID": 3, "Name": "mail.example.com", "DKIMVerified": true},
			{"ID": 4, "Name": "b.example"}, {"ID": 5, "Name": "rotating.example", "DKIMVerified": true}]}`,
		"GET /domains/3":            verified,
		"GET /domains/4":            added,
		"GET /domains/5":            rotating,
		"POST /domains":             added,
		"PUT /domains/3/verifyDkim": verified,
		"PUT /domains/4/verifyDkim": added,
		"PUT /domains/5/verifyDkim": rotating,
	})
	// What -json prints of each answer: the answer decoded and encoded
	// again, every field of api.DomainDetails in its order.
	verifiedOut := `{"ID":3,"Name":"mail.example.com","DKIMVerified":true,"WeakDKIM":false,` +
		`"DKIMHost":"pstrn-rsa-20240611-ab12._domainkey.mail.example.com","DKIMTextValue":"v=DKIM1; k=rsa; p=RSA3","DKIMPendingHost":"",` +
		`"DKIMPendingTextValue":"","DKIMRevokedHost":"pstrn-rsa-20240101-0f0f._domainkey.mail.example.com",` +
		`"DKIMRevokedTextValue":"v=DKIM1; k=rsa; p=OLD","SafeToRemoveRevokedKeyFromDNS":true,"DKIMUpdateStatus":"Verified",` +
		`"ReturnPathDomain":"","ReturnPathDomainCNAMEValue":"","ReturnPathDomainVerified":false,"SPFHost":"","SPFTextValue":"",` +
		`"DKIMRecords":[{"Algorithm":"ed25519","Host":"pstrn-ed-20240611-ab12._domainkey.mail.example.com",` +
		`"TextValue":"v=DKIM1; k=ed25519; p=ED3"},{"Algorithm":"rsa","Host":"pstrn-rsa-20240611-ab12._domainkey.mail.example.com",` +
		`"TextValue":"v=DKIM1; k=rsa; p=RSA3"}]}`
	addedOut := `{"ID":4,"Name":"b.example","DKIMVerified":false,"WeakDKIM":false,"DKIMHost":"","DKIMTextValue":"",` +
		`"DKIMPendingHost":"pstrn-rsa-20240611-cd34._domainkey.b.example","DKIMPendingTextValue":"v=DKIM1; k=rsa; p=RSA4",` +
		`"DKIMRevokedHost":"","DKIMRevokedTextValue":"","SafeToRemoveRevokedKeyFromDNS":false,"DKIMUpdateStatus":"Pending",` +
		`"ReturnPathDomain":"","ReturnPathDomainCNAMEValue":"","ReturnPathDomainVerified":false,"SPFHost":"b.example",` +
		`"SPFTextValue":"v=spf1 a mx ~all","DKIMRecords":[{"Algorithm":"ed25519","Host":"pstrn-ed-20240611-cd34._domainkey.b.example",` +
		`"TextValue":"v=DKIM1; k=ed25519; p=ED4"},{"Algorithm":"rsa","Host":"pstrn-rsa-20240611-cd34._domainkey.b.example",` +
		`"TextValue":"v=DKIM1; k=rsa; p=RSA4"}]}`
	rotatingOut := `{"ID":5,"Name":"rotating.example",` +
		`"DKIMVerified":true,"WeakDKIM":false,"DKIMHost":"pstrn-rsa-20240101-1111._domainkey.rotating.example",` +
		`"DKIMTextValue":"v=DKIM1; k=rsa; p=RSA5","DKIMPendingHost":"pstrn-rsa-20240611-2222._domainkey.rotating.example",` +
		`"DKIMPendingTextValue":"v=DKIM1; k=rsa; p=NEW5","DKIMRevokedHost":"pstrn-rsa-20230101-0000._domainkey.rotating.example",` +
		`"DKIMRevokedTextValue":"","SafeToRemoveRevokedKeyFromDNS":false,"DKIMUpdateStatus":"Pending","ReturnPathDomain":"",` +
		`"ReturnPathDomainCNAMEValue":"","ReturnPathDomainVerified":false,"SPFHost":"","SPFTextValue":"",` +
		`"DKIMRecords":[{"Algorithm":"ed25519","Host":"pstrn-ed-20240101-1111._domainkey.rotating.example",` +
		`"TextValue":"v=DKIM1; k=ed25519; p=ED5"},{"Algorithm":"rsa","Host":"pstrn-rsa-20240101-1111._domainkey.rotating.example",` +
		`"TextValue":"v=DKIM1; k=rsa; p=RSA5"},{"Algorithm":"ed25519","Host":"pstrn-ed-20240611-2222._domainkey.rotating.example",` +
		`"TextValue":"v=DKIM1; k=ed25519; p=NEWED5"},{"Algorithm":"rsa","Host":"pstrn-rsa-20240611-2222._domainkey.rotating.example",` +
		`"TextValue":"v=DKIM1; k=rsa; p=NEW5"}]}`
	addedRecords := "" +
		"Publish these DNS TXT records (one record each):\n" +
		"\n" +
		"  Ed25519 key\n" +
		"  host:  pstrn-ed-20240611-cd34._domainkey.b.example\n" +
		"  value: v=DKIM1; k=ed25519; p=ED4\n" +
		"\n" +
		"  RSA key\n" +
		"  host:  pstrn-rsa-20240611-cd34._domainkey.b.example\n" +
		"  value: v=DKIM1; k=rsa; p=RSA4\n" +
		"\n" +
		"In a zone file:\n" +
		"  pstrn-ed-20240611-cd34._domainkey.b.example. IN TXT \"v=DKIM1; k=ed25519; p=ED4\"\n" +
		"  pstrn-rsa-20240611-cd34._domainkey.b.example. IN TXT \"v=DKIM1; k=rsa; p=RSA4\"\n"
	rotatingRecords := "" +
		"Publish these DNS TXT records (one record each):\n" +
		"\n" +
		"  Ed25519 key\n" +
		"  host:  pstrn-ed-20240101-1111._domainkey.rotating.example\n" +
		"  value: v=DKIM1; k=ed25519; p=ED5\n" +
		"\n" +
		"  RSA key\n" +
		"  host:  pstrn-rsa-20240101-1111._domainkey.rotating.example\n" +
		"  value: v=DKIM1; k=rsa; p=RSA5\n" +
		"\n" +
		"  Ed25519 key\n" +
		"  host:  pstrn-ed-20240611-2222._domainkey.rotating.example\n" +
		"  value: v=DKIM1; k=ed25519; p=NEWED5\n" +
		"\n" +
		"  RSA key\n" +
		"  host:  pstrn-rsa-20240611-2222._domainkey.rotating.example\n" +
		"  value: v=DKIM1; k=rsa; p=NEW5\n" +
		"\n" +
		"In a zone file:\n" +
		"  pstrn-ed-20240101-1111._domainkey.rotating.example. IN TXT \"v=DKIM1; k=ed25519; p=ED5\"\n" +
		"  pstrn-rsa-20240101-1111._domainkey.rotating.example. IN TXT \"v=DKIM1; k=rsa; p=RSA5\"\n" +
		"  pstrn-ed-20240611-2222._domainkey.rotating.example. IN TXT \"v=DKIM1; k=ed25519; p=NEWED5\"\n" +
		"  pstrn-rsa-20240611-2222._domainkey.rotating.example. IN TXT \"v=DKIM1; k=rsa; p=NEW5\"\n"
	notVerified := "postern: domain verify: b.example is not verified: its DKIM records are not all published as above\n"
	rotationWaits := "postern: domain verify: rotating.example: the pending records are not all published yet\n"

	env := []string{"POSTERN_URL=" + url, "POSTERN_TOKEN=account-token"}
	checkOutputs(t, env, []outputCase{
		{[]string{"domain", "add", "b.example"}, "Domain b.example added (ID 4).\n\n" + addedRecords +
			"\nOnce they are published, run: postern domain verify b.example (with the same -token and -url)\n", ""},
		{[]string{"domain", "add", "b.example", "-json"}, addedOut + "\n", ""},
		{[]string{"domain", "list"}, "" +
			"ID  NAME              VERIFIED  DKIM      REVOKED\n" +
			"3   mail.example.com  yes       Verified  safe to remove\n" +
			"4   b.example         no        Pending   -\n" +
			"5   rotating.example  yes       Pending   keep in DNS\n" +
			"\n" +
			"mail.example.com:\n" +
			"  Ed25519  active   pstrn-ed-20240611-ab12._domainkey.mail.example.com TXT v=DKIM1; k=ed25519; p=ED3\n" +
			"  RSA      active   pstrn-rsa-20240611-ab12._domainkey.mail.example.com TXT v=DKIM1; k=rsa; p=RSA3\n" +
			"  RSA      revoked  pstrn-rsa-20240101-0f0f._domainkey.mail.example.com (and its Ed25519 twin)\n" +
			"\n" +
			"b.example:\n" +
			"  Ed25519  pending  pstrn-ed-20240611-cd34._domainkey.b.example TXT v=DKIM1; k=ed25519; p=ED4\n" +
			"  RSA      pending  pstrn-rsa-20240611-cd34._domainkey.b.example TXT v=DKIM1; k=rsa; p=RSA4\n" +
			"\n" +
			"rotating.example:\n" +
			"  Ed25519  active   pstrn-ed-20240101-1111._domainkey.rotating.example TXT v=DKIM1; k=ed25519; p=ED5\n" +
			"  RSA      active   pstrn-rsa-20240101-1111._domainkey.rotating.example TXT v=DKIM1; k=rsa; p=RSA5\n" +
			"  Ed25519  pending  pstrn-ed-20240611-2222._domainkey.rotating.example TXT v=DKIM1; k=ed25519; p=NEWED5\n" +
			"  RSA      pending  pstrn-rsa-20240611-2222._domainkey.rotating.example TXT v=DKIM1; k=rsa; p=NEW5\n" +
			"  RSA      revoked  pstrn-rsa-20230101-0000._domainkey.rotating.example (and its Ed25519 twin)\n", ""},
		{[]string{"domain", "list", "-json"}, "[" + verifiedOut + "," + addedOut + "," + rotatingOut + "]\n", ""},
		{[]string{"domain", "verify", "mail.example.com"}, "Domain mail.example.com is verified.\n", ""},
		{[]string{"domain", "verify", "mail.example.com", "-json"}, verifiedOut + "\n", ""},
		{[]string{"domain", "verify", "b.example"}, addedRecords, notVerified},
		{[]string{"domain", "verify", "b.example", "-json"}, addedOut + "\n", notVerified},
		{[]string{"domain", "verify", "rotating.example"}, "The DKIM rotation of rotating.example waits for its new records:\n" + rotatingRecords, rotationWaits},
		{[]string{"domain", "verify", "rotating.example", "-json"}, rotatingOut + "\n", rotationWaits},
	})

	empty := cannedAPI(t, map[string]string{"GET /domains?count=500&offset=0": `{"TotalCount": 0, "Domains": []}`})
	checkOutputs(t, []string{"POSTERN_URL=" + empty, "POSTERN_TOKEN=account-token"}, []outputCase{
		{[]string{"domain", "list"}, "The account has no domains; add one with: postern domain add NAME\n", ""},
		{[]string{"domain", "list", "-json"}, "[]\n", ""},
	})
}
