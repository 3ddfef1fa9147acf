/* `squall new DIR`: a minimal project that serves and whose specs pass at once. */
#ifndef SQ_SCAFFOLD_H
#define SQ_SCAFFOLD_H

/* Main thread, before anything else starts. Writes the project (lua/squall/scaffold.lua has the
 * files); 0, or 1 with the reason on stderr. */
int sq_scaffold(const char *dir);

#endif
