{{/*
Names. The fullname is the release name (or fullnameOverride): with release `mvdns` the
Service is `mvdns`, the ServiceAccounts `mvdns-operator` and `mvdns-dns`, the Lease
`mvdns-operator`. Helm limits release names to 53 characters, so names with a suffix that
must be DNS labels (Services) truncate the base.
*/}}
{{- define "mvdns.fullname" -}}
{{- default .Release.Name .Values.fullnameOverride | trunc 53 | trimSuffix "-" -}}
{{- end -}}

{{- define "mvdns.operatorServiceAccount" -}}
{{- default (printf "%s-operator" (include "mvdns.fullname" .)) .Values.operator.serviceAccount.name -}}
{{- end -}}
{{- define "mvdns.dnsServiceAccount" -}}
{{- default (printf "%s-dns" (include "mvdns.fullname" .)) .Values.dns.serviceAccount.name -}}
{{- end -}}

{{- define "mvdns.labels" -}}
app.kubernetes.io/name: mvdns
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ .Chart.Name }}-{{ .Chart.Version }}
{{- end -}}

{{/* Selector labels of one component: (dict "root" $ "component" "dns") */}}
{{- define "mvdns.selectorLabels" -}}
app.kubernetes.io/name: mvdns
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "mvdns.componentLabels" -}}
{{ include "mvdns.labels" .root }}
app.kubernetes.io/component: {{ .component }}
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
{{- end -}}

{{/* An image reference: (dict "root" $ "image" .Values.dns.image) */}}
{{- define "mvdns.image" -}}
{{- if .image.digest -}}
{{ .image.repository }}@{{ .image.digest }}
{{- else -}}
{{ .image.repository }}:{{ default .root.Chart.AppVersion .image.tag }}
{{- end -}}
{{- end -}}

{{/* The pod security context of both binaries: Pod Security "restricted". */}}
{{- define "mvdns.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: 65532
runAsGroup: 65532
fsGroup: 65532
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{- define "mvdns.containerSecurityContext" -}}
runAsNonRoot: true
runAsUser: 65532
runAsGroup: 65532
readOnlyRootFilesystem: true
allowPrivilegeEscalation: false
privileged: false
capabilities:
  drop: [ALL]
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{/*
RBAC scope: the namespaces that get a Role/RoleBinding when rbac.scope=namespaces, else
nothing (cluster scope: ClusterRole/ClusterRoleBinding).
*/}}
{{- define "mvdns.rbacNamespaces" -}}
{{- if eq .Values.rbac.scope "namespaces" -}}
{{- if not .Values.rbac.namespaces -}}
{{- fail "rbac.scope=namespaces needs at least one entry in rbac.namespaces" -}}
{{- end -}}
{{- .Values.rbac.namespaces | uniq | toJson -}}
{{- else -}}
[]
{{- end -}}
{{- end -}}

{{/* The namespace the DNS server watches ("" = all). */}}
{{- define "mvdns.dnsWatchNamespace" -}}
{{- if .Values.dns.namespace -}}
{{- .Values.dns.namespace -}}
{{- else if and (eq .Values.rbac.scope "namespaces") (eq (len .Values.rbac.namespaces) 1) -}}
{{- first .Values.rbac.namespaces -}}
{{- end -}}
{{- end -}}

{{/* The ClusterIP CoreDNS forwards to: coredns.serviceIP, else service.clusterIP, else the
live Service's (lookup; empty in `helm template`). */}}
{{- define "mvdns.stubDomainIP" -}}
{{- if .Values.coredns.serviceIP -}}
{{- .Values.coredns.serviceIP -}}
{{- else if and .Values.service.clusterIP (ne .Values.service.clusterIP "None") -}}
{{- .Values.service.clusterIP -}}
{{- else -}}
{{- $svc := lookup "v1" "Service" .Release.Namespace (include "mvdns.fullname" .) -}}
{{- if $svc -}}{{- $svc.spec.clusterIP -}}{{- end -}}
{{- end -}}
{{- end -}}

{{/* dns.restrictedZones as the binaries read it: "ZONE=NS,NS;ZONE=NS". */}}
{{- define "mvdns.restrictedZones" -}}
{{- $entries := list -}}
{{- range $zone, $namespaces := . -}}
{{- $entries = append $entries (printf "%s=%s" $zone (join "," $namespaces)) -}}
{{- end -}}
{{- join ";" $entries -}}
{{- end -}}

{{/* The DNS server's flags after its listen addresses: the Deployment's and the CoreDNS
sidecar's (coredns.sidecar) are the same server. */}}
{{- define "mvdns.dnsServeArgs" -}}
{{- $v := .Values.dns }}
{{- $watch := include "mvdns.dnsWatchNamespace" . }}
- --log-format={{ .Values.logFormat }}
- --log-level={{ .Values.logLevel }}
{{- with $watch }}
- --namespace={{ . }}
{{- end }}
{{- with $v.soa.mname }}
- --soa-mname={{ . }}
{{- end }}
{{- with $v.soa.rname }}
- --soa-rname={{ . }}
{{- end }}
{{- range $v.nameservers }}
- --nameserver={{ . }}
{{- end }}
{{- if not (kindIs "invalid" $v.negativeTtl) }}
- --negative-ttl={{ $v.negativeTtl }}
{{- end }}
{{- if not (kindIs "invalid" $v.maxTcpConnections) }}
- --max-tcp-connections={{ $v.maxTcpConnections }}
{{- end }}
{{- if not (kindIs "invalid" $v.tcpIdleTimeoutSeconds) }}
- --tcp-idle-timeout-seconds={{ $v.tcpIdleTimeoutSeconds }}
{{- end }}
{{- with $v.rateLimit }}
{{- if .responsesPerSecond }}
- --rrl-responses-per-second={{ .responsesPerSecond }}
- --rrl-slip={{ .slip | default 0 }}
{{- end }}
{{- end }}
{{- range $v.extraArgs }}
- {{ . | quote }}
{{- end }}
{{- end -}}

{{/* The DNS server's environment: its zones and who may publish in them. */}}
{{- define "mvdns.dnsEnv" -}}
{{- $v := .Values.dns }}
# Comma-separated zones (the server also takes repeated --zone flags).
- name: MVDNS_ZONES
  value: {{ join "," $v.zones | quote }}
{{- with $v.restrictedZones }}
- name: MVDNS_RESTRICTED_ZONES
  value: {{ include "mvdns.restrictedZones" . | quote }}
{{- end }}
{{- end -}}
