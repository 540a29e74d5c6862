#!/bin/sh
# Generates one rejection scenario per status code from uas_reject.xml.in.
# sipp validates the status code of a <send> when it loads a scenario, so "SIP/2.0 [code]"
# with -key code 486 is refused: the code has to be in the file.
# Run from anywhere; the generated files are committed, so run it after editing the template.
set -eu
cd "$(dirname "$0")"
while IFS='|' read -r code reason; do
    sed -e "s/@CODE@/$code/g" -e "s/@REASON@/$reason/g" uas_reject.xml.in > "uas_reject_$code.xml"
    echo "uas_reject_$code.xml: $code $reason"
done <<'CODES'
403|Forbidden
404|Not Found
486|Busy Here
503|Service Unavailable
603|Decline
CODES
