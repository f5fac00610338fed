{{- define "mvdns.operatorServiceAccount" -}}
{{- default (printf "%s-operator" .Release.Name) .Values.operator.serviceAccount.name -}}
{{- end -}}
{{- define "mvdns.dnsServiceAccount" -}}
{{- default (printf "%s-dns" .Release.Name) .Values.dns.serviceAccount.name -}}
{{- end -}}
{{- define "mvdns.labels" -}}
app.kubernetes.io/name: mvdns
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ .Chart.Name }}-{{ .Chart.Version }}
{{- end -}}
